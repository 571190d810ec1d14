//! The projection: every event that changes what a customer sees, applied to the views.
//!
//! A row only moves forward along the reservation's states, so a replayed or late event
//! leaves it as it is.

use rentacar_events::{Delivery, Handler, HandlerError, Payload};
use rentacar_proto::events::EventEnvelope;
use sea_orm::DatabaseTransaction;

use crate::store::{self, StatusChange};

/// The subjects mypage follows.
pub const SUBJECTS: [&str; 5] = [
    "rentacar.fleet.car_registered",
    "rentacar.reservation.paid",
    "rentacar.reservation.confirmed",
    "rentacar.reservation.rejected",
    "rentacar.reservation.canceled",
];

pub struct Projection;

fn change<'a>(
    reservation_id: &'a str,
    customer_id: &'a str,
    car_number: &'a str,
    status: &'static str,
) -> StatusChange<'a> {
    StatusChange {
        reservation_id,
        customer_id,
        car_number,
        status,
    }
}

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
                store::set_status(
                    txn,
                    change(&e.reservation_id, &e.customer_id, "", "CONFIRMED"),
                    seq,
                )
                .await?
            }
            Some(Payload::ReservationRejected(e)) => {
                store::set_status(
                    txn,
                    change(&e.reservation_id, &e.customer_id, "", "REJECTED"),
                    seq,
                )
                .await?
            }
            Some(Payload::ReservationCanceled(e)) => {
                let canceled = change(&e.reservation_id, &e.customer_id, &e.car_number, "CANCELED");
                store::set_status(txn, canceled, seq).await?
            }
            _ => {}
        }
        Ok(())
    }
}
