//! What fleet consumes: payment approvals (book the dates) and refunds (free them).

use rentacar_events::{Delivery, Handler, HandlerError, Outbox, Payload};
use rentacar_proto::events::EventEnvelope;
use sea_orm::DatabaseTransaction;

use crate::bookings;

/// The subjects of the bookings consumer. One consumer for both keeps an approval and the
/// refund of the same payment in the order payment published them.
pub const SUBJECTS: [&str; 2] = ["rentacar.payment.approved", "rentacar.payment.canceled"];

pub struct Bookings {
    pub outbox: Outbox,
}

impl Handler for Bookings {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        _: &Delivery,
    ) -> Result<(), HandlerError> {
        match &event.payload {
            Some(Payload::PaymentApproved(paid)) => bookings::book(txn, &self.outbox, paid).await?,
            Some(Payload::PaymentCanceled(canceled)) => {
                bookings::release(txn, &self.outbox, canceled).await?
            }
            _ => {}
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.outbox.wake();
    }
}
