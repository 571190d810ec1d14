//! Faults: payment down, fleet down, NATS down, a read model that was away.

use rentacar_proto::{
    common::Money,
    fleet::RegisterCarRequest,
    mypage::ListMyReservationsRequest,
    reservation::{ListReservationsRequest, ReservationStatus, ReserveRequest},
};
use rentacar_testkit::{Backend, Platform, Svc, day, eventually, register_car, wait_for_catalog};
use tonic::Code;
use tonic_types::StatusExt;

fn reserve(request_id: &str, car: &str, pickup: &str, ret: &str) -> ReserveRequest {
    ReserveRequest {
        request_id: request_id.into(),
        customer_id: "frank".into(),
        car_number: car.into(),
        pickup_date: pickup.into(),
        return_date: ret.into(),
        payment_method: "tok_visa".into(),
    }
}

async fn count_reservations(platform: &Platform) -> usize {
    let request = ListReservationsRequest {
        customer_id: "frank".into(),
        page_size: 0,
        page_token: String::new(),
    };
    platform
        .reservation()
        .await
        .list_reservations(request)
        .await
        .unwrap()
        .into_inner()
        .reservations
        .len()
}

/// Payment down: Reserve fails fast with a retryable UNAVAILABLE and stores nothing; the
/// same request succeeds once payment is back.
async fn payment_down(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    platform.stop_service(Svc::Payment).await?;

    let mut reservations = platform.reservation().await;
    let request = reserve("while-payment-down", "1111", day(3), day(4));
    let err = reservations.reserve(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.get_details_retry_info().is_some(),
        "UNAVAILABLE carries RetryInfo"
    );
    assert_eq!(count_reservations(&platform).await, 0);

    platform.start_service(Svc::Payment).await?;
    let reservation = reservations
        .reserve(request)
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(reservation.status(), ReservationStatus::Paid);
    assert_eq!(count_reservations(&platform).await, 1);
    platform.shutdown().await
}

/// Fleet down: a car registered before still reserves, priced from reservation's replica.
async fn fleet_down(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;
    platform.stop_service(Svc::Fleet).await?;

    let reservation = platform
        .reservation()
        .await
        .reserve(reserve("while-fleet-down", "2222", day(3), day(6)))
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(reservation.status(), ReservationStatus::Paid);
    assert_eq!(reservation.price.unwrap().amount_minor, 21000);
    platform.shutdown().await
}

/// NATS down: fleet still registers (the outbox keeps the event); once NATS is back the
/// event reaches reservation, and the stream holds each registration exactly once.
async fn outbox_survives_nats_outage(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    platform.stop_nats().await?;

    platform
        .fleet()
        .await
        .register_car(RegisterCarRequest {
            car_number: "5555".into(),
            model: "Leaf".into(),
            daily_price: Some(Money {
                currency_code: "JPY".into(),
                amount_minor: 6000,
            }),
        })
        .await?;
    // Reservations of known cars go on meanwhile.
    platform
        .reservation()
        .await
        .reserve(reserve("during-outage", "1111", day(3), day(4)))
        .await?;

    platform.start_nats().await?;
    wait_for_catalog(&platform, "5555").await;
    let reservation = platform
        .reservation()
        .await
        .reserve(reserve("after-outage", "5555", day(3), day(4)))
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(reservation.price.unwrap().amount_minor, 6000);

    assert_eq!(platform.messages_on("rentacar.fleet.car_registered").await?, 2);
    // Both reservations' events arrive too, each once.
    let paid = eventually("both reservation.paid events in the stream", || async {
        let n = platform.messages_on("rentacar.reservation.paid").await.ok()?;
        (n >= 2).then_some(n)
    })
    .await;
    assert_eq!(paid, 2);
    platform.shutdown().await
}

/// A read model that was down catches up from the stream when it returns.
async fn mypage_catches_up(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    platform.stop_service(Svc::Mypage).await?;
    let mut reservations = platform.reservation().await;
    for (i, (pickup, ret)) in [(day(3), day(4)), (day(7), day(9))].into_iter().enumerate() {
        reservations
            .reserve(reserve(&format!("offline-{i}"), "1111", pickup, ret))
            .await?;
    }

    platform.start_service(Svc::Mypage).await?;
    let mypage = platform.mypage().await;
    eventually("mypage to catch up", || {
        let mut mypage = mypage.clone();
        async move {
            let request = ListMyReservationsRequest {
                customer_id: "frank".into(),
                page_size: 0,
                page_token: String::new(),
            };
            let rows = mypage
                .list_my_reservations(request)
                .await
                .ok()?
                .into_inner()
                .reservations;
            (rows.len() == 2).then_some(())
        }
    })
    .await;
    platform.shutdown().await
}

rentacar_testkit::on_both_backends!(
    payment_down,
    fleet_down,
    outbox_survives_nats_outage,
    mypage_catches_up
);
