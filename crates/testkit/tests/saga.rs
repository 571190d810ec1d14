//! The asynchronous half: paid → booked → confirmed, rejection with refund, cancel → freed,
//! with fleet away, with many customers racing for one car, with redeliveries and crashes.

use std::collections::HashMap;

use async_nats::HeaderMap;
use rentacar_proto::{
    common::Money,
    payment::{GetPaymentRequest, PayRequest, PaymentStatus, Rental},
    reservation::{CancelReservationRequest, GetReservationRequest, Reservation, ReservationStatus},
};
use rentacar_reservation::domain::ReserveCommand;
use rentacar_testkit::{Backend, Platform, Svc, day, eventually, register_car, reserve, settled};
use rentacar_types::{FieldViolations, RentalPeriod};

async fn payment_status(platform: &Platform, reservation_id: &str) -> anyhow::Result<PaymentStatus> {
    let request = GetPaymentRequest {
        reservation_id: reservation_id.into(),
    };
    Ok(platform
        .payment()
        .await
        .get_payment(request)
        .await?
        .into_inner()
        .payment
        .unwrap()
        .status())
}

/// Reserve, confirm, cancel, and the freed dates confirm a new reservation.
async fn end_to_end(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    let mut reservations = platform.reservation().await;

    let first = reservations
        .reserve(reserve("e-1", "gina", "1111", day(3), day(6)))
        .await?;
    let first = first.into_inner().reservation.unwrap();
    assert_eq!(first.status(), ReservationStatus::Paid);
    platform
        .watch_until(&first.reservation_id, |r| {
            r.status() == ReservationStatus::Confirmed
        })
        .await?;

    let cancel = CancelReservationRequest {
        reservation_id: first.reservation_id.clone(),
        customer_id: "gina".into(),
    };
    let canceled = reservations
        .cancel_reservation(cancel)
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(canceled.status(), ReservationStatus::Canceled);
    assert_eq!(
        payment_status(&platform, &first.reservation_id).await?,
        PaymentStatus::Refunded
    );

    // The dates come free by event; a new reservation of them is then confirmed.
    eventually("fleet to release the dates", || async {
        (platform.messages_on("rentacar.fleet.car_released").await.ok()? == 1).then_some(())
    })
    .await;
    let again = platform
        .reserve_and_settle(reserve("e-2", "hank", "1111", day(3), day(6)))
        .await?;
    assert_eq!(again.status(), ReservationStatus::Confirmed);

    // An overlapping one is rejected, with the reason, and its payment refunded.
    let late = platform
        .reserve_and_settle(reserve("e-3", "ivan", "1111", day(5), day(7)))
        .await?;
    assert_eq!(late.status(), ReservationStatus::Rejected);
    assert!(
        late.rejection_reason.contains("already booked"),
        "{}",
        late.rejection_reason
    );
    assert_eq!(
        payment_status(&platform, &late.reservation_id).await?,
        PaymentStatus::Refunded
    );
    // It holds none of its days: the one that was free is booked next.
    let after = platform
        .reserve_and_settle(reserve("e-4", "ivan", "1111", day(6), day(7)))
        .await?;
    assert_eq!(after.status(), ReservationStatus::Confirmed);

    // Illegal transitions are refused.
    let cancel = CancelReservationRequest {
        reservation_id: late.reservation_id.clone(),
        customer_id: "ivan".into(),
    };
    let err = reservations.cancel_reservation(cancel).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    platform.shutdown().await
}

/// With fleet stopped, reservations and payments are still accepted; when it returns every
/// one converges, nothing lost.
async fn fleet_away_then_back(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;
    platform.stop_service(Svc::Fleet).await?;

    let mut reservations = platform.reservation().await;
    let mut ids = Vec::new();
    for (i, (car, pickup, ret)) in [
        ("1111", day(3), day(5)),
        ("1111", day(4), day(6)),
        ("2222", day(3), day(5)),
    ]
    .into_iter()
    .enumerate()
    {
        let made = reservations
            .reserve(reserve(&format!("away-{i}"), "jane", car, pickup, ret))
            .await?;
        ids.push(made.into_inner().reservation.unwrap().reservation_id);
    }
    for id in &ids {
        let now = reservations
            .get_reservation(GetReservationRequest {
                reservation_id: id.clone(),
            })
            .await?;
        assert_eq!(
            now.into_inner().reservation.unwrap().status(),
            ReservationStatus::Paid
        );
    }

    platform.start_service(Svc::Fleet).await?;
    let mut outcomes = Vec::new();
    for id in &ids {
        outcomes.push(platform.watch_until(id, settled).await?.status());
    }
    assert_eq!(
        outcomes,
        [
            ReservationStatus::Confirmed,
            ReservationStatus::Rejected,
            ReservationStatus::Confirmed
        ],
        "the first of the overlapping pair wins, in payment order"
    );
    assert_eq!(payment_status(&platform, &ids[1]).await?, PaymentStatus::Refunded);
    platform.shutdown().await
}

/// Fifty customers reserve one car at once for ranges that all share a day, with two fleet
/// replicas deciding: exactly one is confirmed, every other rejected and refunded, and the
/// money kept is the confirmed price.
async fn fifty_race_for_one_car(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "7777", "Supra", 10000).await?;
    platform.start_replica(Svc::Fleet).await?;

    let reservations = platform.reservation().await;
    let mut calls = Vec::new();
    for i in 0..50u32 {
        let mut client = reservations.clone();
        // Every range holds 2026-12-05.
        let pickup = day(3 + i as u64 % 4).to_owned();
        let ret = day(8 + i as u64 % 3).to_owned();
        let request = reserve(&format!("race-{i}"), &format!("racer-{i}"), "7777", &pickup, &ret);
        calls.push(tokio::spawn(async move { client.reserve(request).await }));
    }
    let mut made = Vec::new();
    for call in calls {
        made.push(call.await??.into_inner().reservation.unwrap());
    }

    let mut by_status: HashMap<ReservationStatus, Vec<Reservation>> = HashMap::new();
    for reservation in &made {
        let settled = platform.watch_until(&reservation.reservation_id, settled).await?;
        by_status.entry(settled.status()).or_default().push(settled);
    }
    let confirmed = by_status
        .remove(&ReservationStatus::Confirmed)
        .unwrap_or_default();
    let rejected = by_status.remove(&ReservationStatus::Rejected).unwrap_or_default();
    assert_eq!(confirmed.len(), 1, "exactly one reservation gets the car");
    assert_eq!(rejected.len(), 49);

    let mut kept = 0;
    for reservation in confirmed.iter().chain(&rejected) {
        let request = GetPaymentRequest {
            reservation_id: reservation.reservation_id.clone(),
        };
        let payment = platform
            .payment()
            .await
            .get_payment(request)
            .await?
            .into_inner()
            .payment
            .unwrap();
        match payment.status() {
            PaymentStatus::Approved => kept += payment.amount.unwrap().amount_minor,
            PaymentStatus::Refunded => {}
            other => panic!("unexpected payment status {other:?}"),
        }
    }
    assert_eq!(
        kept,
        confirmed[0].price.as_ref().unwrap().amount_minor,
        "only the confirmed price is kept"
    );
    for reservation in &rejected {
        assert_eq!(
            payment_status(&platform, &reservation.reservation_id).await?,
            PaymentStatus::Refunded
        );
    }
    platform.shutdown().await
}

/// The same event delivered again (same event id, new message id, as after a lost ack) has
/// no second effect: fleet books once and says so once.
async fn redelivery_has_no_second_effect(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    let made = platform
        .reservation()
        .await
        .reserve(reserve("d-1", "kim", "1111", day(3), day(4)))
        .await?;
    let made = made.into_inner().reservation.unwrap();
    platform
        .watch_until(&made.reservation_id, |r| {
            r.status() == ReservationStatus::Confirmed
        })
        .await?;

    let js = platform.jetstream().await?;
    let stream = js.get_stream(rentacar_events::stream::STREAM_NAME).await?;
    let original = stream
        .get_last_raw_message_by_subject("rentacar.payment.approved")
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "a-redelivery");
    js.publish_with_headers("rentacar.payment.approved", headers, original.payload.clone())
        .await?
        .await?;

    platform.wait_for_consumer("fleet-bookings").await?;
    assert_eq!(
        platform.messages_on("rentacar.payment.approved").await?,
        2,
        "the copy is in the stream"
    );
    assert_eq!(
        platform.messages_on("rentacar.fleet.car_booked").await?,
        1,
        "and was applied once"
    );
    assert_eq!(platform.messages_on("rentacar.fleet.booking_rejected").await?, 0);
    platform.shutdown().await
}

/// Payment and reservation crash after committing but before publishing (NATS is down, so
/// the events can only be in their outboxes). After the restart the events are delivered
/// and the reservation is confirmed, each event once.
async fn a_crash_between_commit_and_publish_loses_nothing(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    platform.stop_nats().await?;
    let made = platform
        .reservation()
        .await
        .reserve(reserve("k-1", "lee", "1111", day(3), day(4)))
        .await?;
    let made = made.into_inner().reservation.unwrap();

    platform.kill_service(Svc::Reservation).await;
    platform.kill_service(Svc::Payment).await;
    platform.start_nats().await?;
    platform.start_service(Svc::Payment).await?;
    platform.start_service(Svc::Reservation).await?;

    let settled = platform.watch_until(&made.reservation_id, settled).await?;
    assert_eq!(settled.status(), ReservationStatus::Confirmed);
    assert_eq!(platform.messages_on("rentacar.payment.approved").await?, 1);
    assert_eq!(platform.messages_on("rentacar.fleet.car_booked").await?, 1);
    platform.shutdown().await
}

/// Payment approved but its answer never reached reservation (here: payment was down for
/// the call, then the charge went through anyway). Nobody retries; the pending
/// reservation is settled from payment's record and goes on to CONFIRMED by itself.
async fn a_lost_payment_answer_is_settled(backend: Backend) -> anyhow::Result<()> {
    let mut platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    platform.stop_service(Svc::Payment).await?;
    let request = reserve("lost-1", "mona", "1111", day(3), day(5));
    let err = platform
        .reservation()
        .await
        .reserve(request.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    // The charge reservation asked for, as payment would have recorded it.
    let mut violations = FieldViolations::new();
    let command = ReserveCommand {
        request_id: request.request_id.clone(),
        customer_id: request.customer_id.clone(),
        car_number: request.car_number.clone(),
        period: RentalPeriod::parse(&request.pickup_date, &request.return_date, &mut violations).unwrap(),
        payment_method: request.payment_method.clone(),
    };
    let reservation_id = command.reservation_id();
    platform.start_service(Svc::Payment).await?;
    let pay = PayRequest {
        reservation_id: reservation_id.clone(),
        customer_id: request.customer_id.clone(),
        amount: Some(Money {
            currency_code: "JPY".into(),
            amount_minor: 10000,
        }),
        payment_method: "tok_visa".into(),
        rental: Some(Rental {
            car_number: request.car_number.clone(),
            pickup_date: request.pickup_date.clone(),
            return_date: request.return_date.clone(),
        }),
    };
    platform.payment().await.pay(pay).await?;

    let settled = eventually("the pending reservation to be settled", || {
        let id = reservation_id.clone();
        let platform = &platform;
        async move {
            let mut client = platform.reservation().await;
            let found = client
                .get_reservation(GetReservationRequest { reservation_id: id })
                .await
                .ok()?;
            found.into_inner().reservation.filter(settled)
        }
    })
    .await;
    assert_eq!(settled.status(), ReservationStatus::Confirmed);
    assert_eq!(settled.price.unwrap().amount_minor, 10000);
    platform.shutdown().await
}

rentacar_testkit::on_both_backends!(
    a_lost_payment_answer_is_settled,
    end_to_end,
    fleet_away_then_back,
    fifty_race_for_one_car,
    redelivery_has_no_second_effect,
    a_crash_between_commit_and_publish_loses_nothing,
);
