//! The projection: every event that changes what a customer sees, applied to the views.
//!
//! A row only moves forward: an event older than the row's `last_event_sequence` (a replay
//! after a consumer reset) leaves it as it is.

use rentacar_events::{Delivery, Handler, HandlerError, Payload};
use rentacar_proto::events::EventEnvelope;
use sea_orm::DatabaseTransaction;

use crate::store;

/// The subjects mypage follows.
pub const SUBJECTS: [&str; 5] = [
    "rentacar.fleet.car_registered",
    "rentacar.reservation.paid",
    "rentacar.reservation.confirmed",
    "rentacar.reservation.rejected",
    "rentacar.reservation.canceled",
];

pub struct Projection;

impl Handler for Projection {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let seq = delivery.stream_sequence as i64;
        match &event.payload {
            Some(Payload::CarRegistered(car)) => store::upsert_car(txn, car, seq).await?,
            Some(Payload::ReservationPaid(paid)) => store::insert_reservation(txn, paid, seq).await?,
            Some(Payload::ReservationConfirmed(e)) => {
                store::set_status(txn, &e.reservation_id, "CONFIRMED", seq).await?
            }
            Some(Payload::ReservationRejected(e)) => {
                store::set_status(txn, &e.reservation_id, "REJECTED", seq).await?
            }
            Some(Payload::ReservationCanceled(e)) => {
                store::set_status(txn, &e.reservation_id, "CANCELED", seq).await?
            }
            _ => {}
        }
        Ok(())
    }
}
