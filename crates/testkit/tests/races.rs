//! Concurrent calls on one reservation end in exactly one outcome, on SQLite and on
//! PostgreSQL (whose READ COMMITTED does not serialise a read followed by a write), and a
//! refund keeps every service consistent whichever path it took to payment.

use std::time::Duration;

use futures::future::join_all;
use rentacar_proto::{
    common::RefundCause,
    payment::{CancelPaymentRequest, PayRequest, PaymentStatus, Rental},
    reservation::{
        CancelReservationRequest, ListReservationsRequest, Reservation, ReservationStatus,
        WatchReservationRequest, reservation_service_client::ReservationServiceClient,
    },
};
use rentacar_testkit::{Backend, Platform, Svc, day, eventually, register_car, reserve};
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

/// A reservation that got as far as CONFIRMED.
async fn confirmed(platform: &Platform, request_id: &str, car: &str) -> anyhow::Result<Reservation> {
    let mut client = platform.reservation().await;
    let paid = client
        .reserve(reserve(request_id, "rosa", car, day(20), day(22)))
        .await?
        .into_inner()
        .reservation
        .expect("a reservation");
    let done = platform
        .watch_until(&paid.reservation_id, |r| r.status() != ReservationStatus::Paid)
        .await?;
    assert_eq!(done.status(), ReservationStatus::Confirmed);
    Ok(done)
}

/// Waits until `subject` holds `expected` events, then checks no more arrive while the
/// saga settles (each consumer has applied everything it was sent).
async fn settle_on(platform: &Platform, subject: &str, expected: u64) -> anyhow::Result<()> {
    eventually(&format!("{expected} events on {subject}"), || async {
        (platform.messages_on(subject).await.ok()? == expected).then_some(())
    })
    .await;
    for consumer in ["reservation-saga", "fleet-bookings", rentacar_mypage::PROJECTION] {
        platform.wait_for_consumer(consumer).await?;
    }
    assert_eq!(platform.messages_on(subject).await?, expected, "{subject}");
    Ok(())
}

/// Many refunds of one payment at once, for both causes a refund can have: one refunds and
/// publishes, the others find it refunded. The reservation ends CANCELED and the car's days
/// are freed once.
async fn concurrent_refunds_refund_once(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "RACE-1", "Corolla", 5000).await?;
    let reservation = confirmed(&platform, "refund-race", "RACE-1").await?;

    let refunds = (0..48).map(|i| {
        let platform = &platform;
        let id = reservation.reservation_id.clone();
        async move {
            let cause = if i % 2 == 0 {
                RefundCause::CustomerCanceled
            } else {
                RefundCause::BookingRejected
            };
            let request = CancelPaymentRequest {
                reservation_id: id,
                reason: format!("refund {i}"),
                cause: cause.into(),
            };
            platform.payment().await.cancel_payment(request).await
        }
    });
    for answer in join_all(refunds).await {
        let payment = answer?.into_inner().payment.expect("a payment");
        assert_eq!(payment.status(), PaymentStatus::Refunded);
    }
    settle_on(&platform, "rentacar.payment.canceled", 1).await?;
    settle_on(&platform, "rentacar.fleet.car_released", 1).await?;
    let now = platform
        .watch_until(&reservation.reservation_id, |r| {
            r.status() != ReservationStatus::Confirmed
        })
        .await?;
    assert_eq!(
        now.status(),
        ReservationStatus::Canceled,
        "a refunded reservation is not kept"
    );
    platform.shutdown().await
}

/// Many cancellations of one reservation at once: all answer CANCELED, and it is refunded,
/// canceled and freed once.
async fn concurrent_cancels_cancel_once(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "RACE-2", "Corolla", 5000).await?;
    let reservation = confirmed(&platform, "cancel-race", "RACE-2").await?;

    let cancels = (0..8).map(|_| {
        let platform = &platform;
        let request = CancelReservationRequest {
            reservation_id: reservation.reservation_id.clone(),
            customer_id: "rosa".into(),
        };
        async move { platform.reservation().await.cancel_reservation(request).await }
    });
    for answer in join_all(cancels).await {
        let now = answer?.into_inner().reservation.expect("a reservation");
        assert_eq!(now.status(), ReservationStatus::Canceled);
    }
    settle_on(&platform, "rentacar.payment.canceled", 1).await?;
    settle_on(&platform, "rentacar.reservation.canceled", 1).await?;
    settle_on(&platform, "rentacar.fleet.car_released", 1).await?;
    platform.shutdown().await
}

/// Calls with one request id but different rentals, at the same moment: one reservation is
/// made; every other caller hears ALREADY_EXISTS, and the one that succeeded gets the rental
/// it asked for.
async fn one_request_id_makes_one_reservation(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "RACE-3", "Corolla", 5000).await?;
    register_car(&platform, "RACE-4", "Prius", 7000).await?;

    let calls = (0..8u64).map(|i| {
        let platform = &platform;
        let car = if i % 2 == 0 { "RACE-3" } else { "RACE-4" };
        let request = reserve("same-id", "sami", car, day(30 + i), day(31 + i));
        async move {
            let answer = platform.reservation().await.reserve(request.clone()).await;
            (request, answer)
        }
    });
    let mut made = Vec::new();
    for (request, answer) in join_all(calls).await {
        match answer {
            Ok(response) => {
                let reservation = response.into_inner().reservation.expect("a reservation");
                assert_eq!(reservation.car_number, request.car_number);
                assert_eq!(reservation.pickup_date, request.pickup_date);
                assert_eq!(reservation.return_date, request.return_date);
                made.push(reservation);
            }
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(made.len(), 1, "one reservation per request id");
    let listed = platform
        .reservation()
        .await
        .list_reservations(ListReservationsRequest {
            customer_id: "sami".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .reservations;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reservation_id, made[0].reservation_id);
    settle_on(&platform, "rentacar.payment.approved", 1).await?;
    platform.shutdown().await
}

/// A refund that reaches payment some other way than through reservation (an operator's
/// call, a compensation arriving late) still cancels the CONFIRMED reservation whose days
/// it frees, and the days can be booked again.
async fn a_refund_from_elsewhere_cancels_the_reservation(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    register_car(&platform, "RACE-5", "Corolla", 5000).await?;
    let reservation = confirmed(&platform, "elsewhere", "RACE-5").await?;
    platform
        .payment()
        .await
        .cancel_payment(CancelPaymentRequest {
            reservation_id: reservation.reservation_id.clone(),
            reason: "refunded by an operator".into(),
            cause: RefundCause::BookingRejected.into(),
        })
        .await?;
    let now = platform
        .watch_until(&reservation.reservation_id, |r| {
            r.status() != ReservationStatus::Confirmed
        })
        .await?;
    assert_eq!(now.status(), ReservationStatus::Canceled);
    settle_on(&platform, "rentacar.fleet.car_released", 1).await?;

    let again = platform
        .reservation()
        .await
        .reserve(reserve("again", "otto", "RACE-5", day(20), day(22)))
        .await?
        .into_inner()
        .reservation
        .expect("a reservation");
    let done = platform
        .watch_until(&again.reservation_id, |r| r.status() != ReservationStatus::Paid)
        .await?;
    assert_eq!(
        done.status(),
        ReservationStatus::Confirmed,
        "the freed days are free"
    );
    platform.shutdown().await
}

/// A reservation given up before its payment was known is voided: a charge arriving later
/// is refused and nothing is published. A refund must say why it happens.
async fn an_abandoned_reservation_refuses_a_late_charge(backend: Backend) -> anyhow::Result<()> {
    let platform = Platform::start(backend).await?;
    let mut payment = platform.payment().await;
    let missing_cause = payment
        .cancel_payment(CancelPaymentRequest {
            reservation_id: "r-void".into(),
            reason: String::new(),
            cause: RefundCause::Unspecified.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing_cause.code(), Code::InvalidArgument);
    let fields: Vec<String> = missing_cause
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["cause"]);

    let voids = (0..4).map(|_| {
        let platform = &platform;
        async move {
            let request = CancelPaymentRequest {
                reservation_id: "r-void".into(),
                reason: "abandoned".into(),
                cause: RefundCause::Abandoned.into(),
            };
            platform.payment().await.cancel_payment(request).await
        }
    });
    for answer in join_all(voids).await {
        let voided = answer?.into_inner().payment.expect("a payment");
        assert_eq!(voided.status(), PaymentStatus::Voided);
    }
    let late = payment
        .pay(PayRequest {
            reservation_id: "r-void".into(),
            customer_id: "vic".into(),
            amount: Some(rentacar_proto::common::Money {
                currency_code: "JPY".into(),
                amount_minor: 5000,
            }),
            payment_method: "tok_visa".into(),
            rental: Some(Rental {
                car_number: "VOID-1".into(),
                pickup_date: day(3).into(),
                return_date: day(4).into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(
        late.get_details_error_info().map(|i| i.reason).as_deref(),
        Some("PAYMENT_VOIDED")
    );
    assert_eq!(platform.messages_on("rentacar.payment.approved").await?, 0);
    assert_eq!(platform.messages_on("rentacar.payment.canceled").await?, 0);

    // Giving up a reservation whose charge went through refunds nothing: the payment comes
    // back approved, for reservation to keep the reservation it paid for.
    register_car(&platform, "VOID-2", "Corolla", 5000).await?;
    let kept = confirmed(&platform, "kept", "VOID-2").await?;
    let answer = payment
        .cancel_payment(CancelPaymentRequest {
            reservation_id: kept.reservation_id.clone(),
            reason: "abandoned".into(),
            cause: RefundCause::Abandoned.into(),
        })
        .await?
        .into_inner()
        .payment
        .expect("a payment");
    assert_eq!(answer.status(), PaymentStatus::Approved);
    assert_eq!(answer.payment_id, kept.payment_id);
    assert_eq!(platform.messages_on("rentacar.payment.canceled").await?, 0);

    // One request id with another payment method is another request, not a retry.
    let mut other_method = reserve("kept", "rosa", "VOID-2", day(20), day(22));
    other_method.payment_method = "tok_chargeDeclined".into();
    let reused = platform
        .reservation()
        .await
        .reserve(other_method)
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    platform.shutdown().await
}

/// A watcher sees a change made by another replica on time, however busy its own replica
/// is announcing changes of other reservations: the re-read does not wait for a quiet moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_another_replicas_change_while_its_own_is_busy() -> anyhow::Result<()> {
    let mut platform = Platform::start(Backend::Sqlite).await?;
    register_car(&platform, "WATCH-1", "Corolla", 5000).await?;
    register_car(&platform, "BUSY-1", "Prius", 7000).await?;
    let watched = confirmed(&platform, "watched", "WATCH-1").await?;
    let other = platform.start_replica(Svc::Reservation).await?;

    let mut watch = platform
        .reservation()
        .await
        .watch_reservation(WatchReservationRequest {
            reservation_id: watched.reservation_id.clone(),
        })
        .await?
        .into_inner();
    let first = watch
        .message()
        .await?
        .and_then(|m| m.reservation)
        .expect("the current state");
    assert_eq!(first.status(), ReservationStatus::Confirmed);

    // This replica announces changes many times a second.
    let busy = CancellationToken::new();
    let announcing = {
        let busy = busy.clone();
        let mut client = platform.reservation().await;
        tokio::spawn(async move {
            // Seconds of announcements: many times the re-read interval.
            for i in 0u64..200 {
                if busy.is_cancelled() {
                    break;
                }
                // A cancellation is announced by the replica that made it, at once.
                let request = reserve(&format!("busy-{i}"), "bea", "BUSY-1", day(1 + i), day(2 + i));
                if let Ok(made) = client.reserve(request).await {
                    let reservation_id = made
                        .into_inner()
                        .reservation
                        .expect("a reservation")
                        .reservation_id;
                    let cancel = CancelReservationRequest {
                        reservation_id,
                        customer_id: "bea".into(),
                    };
                    let _ = client.cancel_reservation(cancel).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut elsewhere =
        ReservationServiceClient::new(Channel::from_shared(format!("http://{other}"))?.connect_lazy());
    elsewhere
        .cancel_reservation(CancelReservationRequest {
            reservation_id: watched.reservation_id.clone(),
            customer_id: "rosa".into(),
        })
        .await?;
    let mut seen = first;
    while seen.status() == ReservationStatus::Confirmed {
        seen = watch
            .message()
            .await?
            .and_then(|m| m.reservation)
            .expect("a change");
    }
    let still_busy = !announcing.is_finished();
    busy.cancel();
    announcing.await?;
    assert_eq!(seen.status(), ReservationStatus::Canceled);
    assert!(still_busy, "the change was seen while announcements kept coming");
    platform.shutdown().await
}

rentacar_testkit::on_both_backends!(
    concurrent_refunds_refund_once,
    concurrent_cancels_cancel_once,
    one_request_id_makes_one_reservation,
    a_refund_from_elsewhere_cancels_the_reservation,
    an_abandoned_reservation_refuses_a_late_charge,
);
