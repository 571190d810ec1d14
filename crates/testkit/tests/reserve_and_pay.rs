//! The synchronous business over real gRPC: register, reserve and pay, cancel and refund,
//! on SQLite and on PostgreSQL.

use rentacar_proto::{
    payment::{GetPaymentRequest, PaymentStatus},
    reservation::{
        CancelReservationRequest, GetReservationRequest, ListReservationsRequest, Reservation,
        ReservationStatus, ReserveRequest,
    },
};
use rentacar_testkit::{Backend, Platform, day, register_car};
use tonic::Code;
use tonic_types::StatusExt;

fn reserve(
    request_id: &str,
    customer: &str,
    car: &str,
    pickup: &str,
    ret: &str,
    token: &str,
) -> ReserveRequest {
    ReserveRequest {
        request_id: request_id.to_owned(),
        customer_id: customer.to_owned(),
        car_number: car.to_owned(),
        pickup_date: pickup.to_owned(),
        return_date: ret.to_owned(),
        payment_method: token.to_owned(),
    }
}

async fn list(platform: &Platform, customer: &str) -> Vec<Reservation> {
    let request = ListReservationsRequest {
        customer_id: customer.to_owned(),
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
}

/// The walk-through of the README, as a new user would try it.
async fn scenario(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;
    let mut reservations = platform.reservation().await;

    let first = reservations
        .reserve(reserve("req-1", "alice", "1111", day(3), day(5), "tok_visa"))
        .await?
        .into_inner()
        .reservation
        .unwrap();
    let second = reservations
        .reserve(reserve("req-2", "alice", "2222", day(4), day(7), "tok_visa"))
        .await?
        .into_inner()
        .reservation
        .unwrap();

    for (reservation, price) in [(&first, 2 * 5000), (&second, 3 * 7000)] {
        // Reserve answers once paid; the car's dates are booked right after, by events.
        assert_eq!(reservation.status(), ReservationStatus::Paid);
        platform
            .watch_until(&reservation.reservation_id, |r| {
                r.status() == ReservationStatus::Confirmed
            })
            .await?;
        let fetched = reservations
            .get_reservation(GetReservationRequest {
                reservation_id: reservation.reservation_id.clone(),
            })
            .await?
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(fetched.status(), ReservationStatus::Confirmed);
        let amount = fetched.price.unwrap();
        assert_eq!(
            (amount.amount_minor, amount.currency_code.as_str()),
            (price, "JPY")
        );
        assert!(fetched.payment_id.starts_with("pay_"), "{}", fetched.payment_id);
    }

    let declined = reservations
        .reserve(reserve(
            "req-3",
            "alice",
            "1111",
            day(12),
            day(14),
            "tok_chargeDeclined",
        ))
        .await
        .unwrap_err();
    assert_eq!(declined.code(), Code::FailedPrecondition);
    assert_eq!(
        declined.get_details_error_info().unwrap().reason,
        "PAYMENT_DECLINED"
    );
    assert_eq!(
        list(&platform, "alice").await.len(),
        2,
        "a declined payment stores no reservation"
    );

    let canceled = reservations
        .cancel_reservation(CancelReservationRequest {
            reservation_id: first.reservation_id.clone(),
            customer_id: "alice".to_owned(),
        })
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(canceled.status(), ReservationStatus::Canceled);
    let payment = platform
        .payment()
        .await
        .get_payment(GetPaymentRequest {
            reservation_id: first.reservation_id.clone(),
        })
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.status(), PaymentStatus::Refunded);

    let mine = list(&platform, "alice").await;
    let statuses: Vec<_> = mine.iter().map(|r| (r.car_number.as_str(), r.status())).collect();
    assert_eq!(
        statuses,
        [
            ("2222", ReservationStatus::Confirmed),
            ("1111", ReservationStatus::Canceled)
        ]
    );
    assert!(list(&platform, "bob").await.is_empty());

    platform.shutdown().await
}

/// Retried calls return the first result and charge once.
async fn retries_are_idempotent(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "3333", "Yaris", 4000).await?;
    let mut reservations = platform.reservation().await;

    let request = reserve("same-request", "carol", "3333", day(3), day(6), "tok_visa");
    let first = reservations
        .reserve(request.clone())
        .await?
        .into_inner()
        .reservation
        .unwrap();
    let again = reservations
        .reserve(request.clone())
        .await?
        .into_inner()
        .reservation
        .unwrap();
    // The retry answers with the same reservation as it is now (maybe CONFIRMED already).
    assert_eq!(
        (&first.reservation_id, &first.payment_id, &first.price),
        (&again.reservation_id, &again.payment_id, &again.price),
        "a retried Reserve returns the first reservation"
    );
    assert_eq!(list(&platform, "carol").await.len(), 1);

    // Concurrent retries (as a client and the mesh may send) still make one reservation.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = reservations.clone();
        let request = reserve("burst", "carol", "3333", day(34), day(35), "tok_visa");
        calls.push(tokio::spawn(async move { client.reserve(request).await }));
    }
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let reservation = call.await??.into_inner().reservation.unwrap();
        ids.insert((reservation.reservation_id, reservation.payment_id));
    }
    assert_eq!(
        ids.len(),
        1,
        "one reservation and one payment for one request id: {ids:?}"
    );
    assert_eq!(list(&platform, "carol").await.len(), 2);

    // The same request id for a different rental is a client bug, not a retry.
    let reused = reservations
        .reserve(reserve(
            "same-request",
            "carol",
            "3333",
            day(22),
            day(23),
            "tok_visa",
        ))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);

    let cancel = CancelReservationRequest {
        reservation_id: first.reservation_id.clone(),
        customer_id: "carol".into(),
    };
    let once = reservations
        .cancel_reservation(cancel.clone())
        .await?
        .into_inner()
        .reservation
        .unwrap();
    let twice = reservations
        .cancel_reservation(cancel)
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(once, twice);
    assert_eq!(twice.status(), ReservationStatus::Canceled);

    platform.shutdown().await
}

/// Cancelling is the owner's business only.
async fn only_the_owner_cancels(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "4444", "Aqua", 3000).await?;
    let mut reservations = platform.reservation().await;
    let mine = reservations
        .reserve(reserve("r", "dave", "4444", day(3), day(4), "tok_visa"))
        .await?
        .into_inner()
        .reservation
        .unwrap();
    let err = reservations
        .cancel_reservation(CancelReservationRequest {
            reservation_id: mine.reservation_id.clone(),
            customer_id: "eve".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let still = reservations
        .get_reservation(GetReservationRequest {
            reservation_id: mine.reservation_id,
        })
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_ne!(still.status(), ReservationStatus::Canceled);
    platform.shutdown().await
}

rentacar_testkit::on_both_backends!(scenario, retries_are_idempotent, only_the_owner_cancels);
