//! What reservation consumes: fleet's registrations (into the car catalog replica), and
//! fleet's booking decisions (the saga).

use rentacar_events::{Delivery, Handler, HandlerError, Outbox, Payload};
use rentacar_proto::{
    common::RefundCause,
    events::{EventEnvelope, ReservationCanceled, ReservationConfirmed, ReservationRejected},
};
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::{
    Error,
    domain::{Reservation, Status},
    metrics::SagaMetrics,
    payment::PaymentClient,
    store::{self, catalog_car},
    watch::Changes,
};

/// Keeps `catalog_cars` in step with `rentacar.fleet.car_registered`.
pub struct CatalogHandler;

impl Handler for CatalogHandler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        _: &Delivery,
    ) -> Result<(), HandlerError> {
        let Some(Payload::CarRegistered(car)) = &event.payload else {
            return Ok(());
        };
        let price = car.daily_price.clone().ok_or_else(|| {
            HandlerError::Failed(format!("car {} registered without a price", car.car_number))
        })?;
        store::upsert_catalog_car(
            txn,
            catalog_car::Model {
                car_number: car.car_number.clone(),
                model: car.model.clone(),
                daily_price_minor: price.amount_minor,
                currency_code: price.currency_code,
            },
        )
        .await?;
        tracing::info!(car_number = %car.car_number, "car added to the catalog");
        Ok(())
    }
}

/// The reservation side of the saga: fleet's decision confirms a paid reservation, or
/// rejects it and refunds its payment.
pub struct SagaHandler {
    pub db: DatabaseConnection,
    pub outbox: Outbox,
    pub payments: PaymentClient,
    pub changes: Changes,
    /// Reservations changed by the transaction in progress (with their new state and when
    /// they were recorded), announced and counted after it commits.
    pub changed: std::sync::Mutex<Vec<(String, Status, i64)>>,
    pub metrics: SagaMetrics,
}

/// The subjects of the saga consumer. Refunds are followed too: whichever of a refund and
/// the decision behind it arrives first, the reservation ends in the same state.
pub const SAGA_SUBJECTS: [&str; 3] = [
    "rentacar.fleet.car_booked",
    "rentacar.fleet.booking_rejected",
    "rentacar.payment.canceled",
];

impl Handler for SagaHandler {
    /// A rejected booking is refunded before the reservation says REJECTED, so that a
    /// rejected reservation is never left charged. Refunding is idempotent on payment's side.
    async fn prepare(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        // Every transaction starts with its events prepared: what is still listed was
        // changed by one that did not commit, so it is nothing to announce.
        self.changed.lock().expect("not poisoned").clear();
        let Some(Payload::BookingRejected(rejected)) = &event.payload else {
            return Ok(());
        };
        let Some(reservation) = ours(
            &rejected.reservation_id,
            store::find_any(&self.db, &rejected.reservation_id).await,
        )?
        else {
            return Ok(());
        };
        if reservation.status == Status::Paid {
            let reason = format!("booking rejected: {}", rejected.reason);
            self.payments
                .refund(
                    &reservation.reservation_id,
                    &reason,
                    RefundCause::BookingRejected,
                    None,
                )
                .await
                .map_err(|e| HandlerError::Failed(format!("refund failed: {e}")))?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        _: &Delivery,
    ) -> Result<(), HandlerError> {
        let (reservation_id, to, reason) = match &event.payload {
            Some(Payload::CarBooked(booked)) => (&booked.reservation_id, Status::Confirmed, None),
            Some(Payload::BookingRejected(rejected)) => (
                &rejected.reservation_id,
                Status::Rejected,
                Some(rejected.reason.as_str()),
            ),
            // Decided below, once the reservation's state is known.
            Some(Payload::PaymentCanceled(refund)) => (&refund.reservation_id, Status::Canceled, None),
            _ => return Ok(()),
        };
        // A booking confirming a paid reservation, the common case, is one statement.
        if matches!(event.payload, Some(Payload::CarBooked(_)))
            && let Some(moved) = store::transition(txn, &self.outbox, reservation_id, to, None, |r| {
                outcome(to, None, r)
            })
            .await?
        {
            self.moved(&moved);
            return Ok(());
        }
        let Some(reservation) = ours(reservation_id, store::find_any(txn, reservation_id).await)? else {
            return Ok(());
        };
        // A refund, by whatever path it reached payment, frees the car's days, so the
        // reservation cannot stay PAID or CONFIRMED: one rejected while still PAID is
        // REJECTED (also when this refund's own change did not commit, a crash right after
        // it), any other is CANCELED.
        let (to, reason) = match &event.payload {
            Some(Payload::PaymentCanceled(refund))
                if refund.cause() == RefundCause::BookingRejected && reservation.status == Status::Paid =>
            {
                (Status::Rejected, Some(refund.reason.as_str()))
            }
            _ => (to, reason),
        };
        // A reservation canceled meanwhile, or an event seen before, moves nothing.
        match store::transition(txn, &self.outbox, reservation_id, to, reason, |r| {
            outcome(to, reason, r)
        })
        .await?
        {
            Some(moved) => self.moved(&moved),
            None => tracing::info!(
                reservation_id,
                status = reservation.status.as_str(),
                wanted = to.as_str(),
                "event leaves the reservation as it is"
            ),
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.outbox.wake();
        for (id, to, created_at_ms) in self.changed.lock().expect("not poisoned").drain(..) {
            self.changes.notify(&id);
            self.metrics.ended(to, created_at_ms);
        }
    }
}

impl SagaHandler {
    /// Remembers a change of the transaction in progress, to count once it commits.
    fn moved(&self, reservation: &Reservation) {
        self.changed.lock().expect("not poisoned").push((
            reservation.reservation_id.clone(),
            reservation.status,
            reservation.created_at_ms,
        ));
    }
}

/// The event of a reservation's move to `to`.
fn outcome(to: Status, reason: Option<&str>, reservation: &Reservation) -> Payload {
    match to {
        Status::Confirmed => Payload::ReservationConfirmed(ReservationConfirmed {
            reservation_id: reservation.reservation_id.clone(),
            customer_id: reservation.customer_id.clone(),
        }),
        Status::Canceled => Payload::ReservationCanceled(ReservationCanceled {
            reservation_id: reservation.reservation_id.clone(),
            customer_id: reservation.customer_id.clone(),
            car_number: reservation.car_number.clone(),
        }),
        _ => Payload::ReservationRejected(ReservationRejected {
            reservation_id: reservation.reservation_id.clone(),
            customer_id: reservation.customer_id.clone(),
            reason: reason.unwrap_or_default().to_owned(),
        }),
    }
}

/// The reservation an event is about, if it is one of ours and ready for it.
///
/// A reservation is recorded (as pending) before payment is called, so an event about an id
/// that was never recorded comes from a payment made outside reservation: nothing to do.
/// One still pending has been paid but not yet marked so: the event is retried until it is.
fn ours(id: &str, found: Result<Option<Reservation>, Error>) -> Result<Option<Reservation>, HandlerError> {
    match found.map_err(|e| HandlerError::Failed(e.to_string()))? {
        None => {
            tracing::warn!(
                reservation_id = id,
                "event about a payment made outside reservation; ignored"
            );
            Ok(None)
        }
        Some(r) if r.status == Status::PendingPayment => Err(HandlerError::Failed(format!(
            "reservation {} is not marked paid yet",
            r.reservation_id
        ))),
        Some(r) => Ok(Some(r)),
    }
}
