//! Reserve-and-pay, made safe against anything stopping halfway.
//!
//! A reservation is first recorded as PENDING_PAYMENT (invisible to reads), then charged,
//! then marked PAID with its event. The charge and the mark run in a task of their own, so
//! a caller that gives up (a deadline, a cancel) does not stop them halfway. Whatever still
//! ends up pending (a crash, payment's answer lost) is settled by [`Checkout::settle_pending`]:
//! it asks payment what happened and marks the reservation PAID, or forgets it. So a
//! payment never stays without its reservation, and a reservation is never PAID without
//! its payment.

use std::time::Duration;

use rentacar_events::Outbox;
use rentacar_proto::payment::PaymentStatus;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Error,
    domain::{self, Reservation, ReserveCommand, Status},
    payment::PaymentClient,
    store,
};

/// How often pending reservations are looked at.
const SETTLE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Checkout {
    db: DatabaseConnection,
    outbox: Outbox,
    payments: PaymentClient,
    /// Pending reservations younger than this may still have a payment call in flight.
    settle_after: Duration,
}

impl Checkout {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        payments: PaymentClient,
        payment_timeout: Duration,
    ) -> Self {
        Self {
            db,
            outbox,
            payments,
            settle_after: payment_timeout + Duration::from_secs(2),
        }
    }

    /// Prices, charges and stores a reservation; a retry of the same request returns the
    /// first result.
    pub async fn reserve(&self, command: ReserveCommand) -> Result<Reservation, Error> {
        let reservation_id = command.reservation_id();
        let pending = match store::find_any(&self.db, &reservation_id).await? {
            Some(existing) if !command.matches(&existing) => {
                return Err(Error::RequestIdReused(existing.request_id));
            }
            // A retry of a call whose payment outcome is still open: charge what was asked.
            Some(existing) if existing.status == Status::PendingPayment => existing,
            Some(existing) => return Ok(existing),
            None => {
                let daily_price = store::daily_price(&self.db, &command.car_number)
                    .await?
                    .ok_or_else(|| Error::CarNotFound(command.car_number.clone()))?;
                let price = domain::price(&daily_price, &command.period).ok_or(Error::PriceOverflow)?;
                let pending = Reservation {
                    reservation_id,
                    request_id: command.request_id,
                    customer_id: command.customer_id,
                    car_number: command.car_number,
                    period: command.period,
                    price,
                    status: Status::PendingPayment,
                    payment_id: String::new(),
                    rejection_reason: None,
                    created_at_ms: store::now_ms(),
                };
                store::insert_pending(&self.db, &pending).await?;
                pending
            }
        };

        let this = self.clone();
        let method = command.payment_method;
        // The charge continues the caller's trace in its own task.
        let charge = async move { this.pay(pending, &method).await };
        tokio::spawn(charge.instrument(tracing::Span::current()))
            .await
            .map_err(|e| Error::Interrupted(e.to_string()))?
    }

    async fn pay(&self, pending: Reservation, payment_method: &str) -> Result<Reservation, Error> {
        let id = &pending.reservation_id;
        let charged = self
            .payments
            .pay(
                id,
                &pending.customer_id,
                &pending.price,
                payment_method,
                &pending.car_number,
                &pending.period,
            )
            .await;
        match charged {
            Ok(payment_id) => store::mark_paid(&self.db, &self.outbox, id, &payment_id).await,
            // Definitely not charged: nothing stays behind.
            Err(
                err @ (Error::PaymentDeclined(_) | Error::InvalidArgument(_) | Error::ChargedDifferently),
            ) => {
                store::forget_pending(&self.db, id).await?;
                Err(err)
            }
            // Charged or not, nobody knows yet: a retry or `settle_pending` finds out.
            Err(err) => Err(err),
        }
    }

    /// Settles old pending reservations until `stop` fires.
    pub async fn settle_pending(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE_INTERVAL) => {}
            }
            if let Err(err) = self.settle_once().await {
                tracing::warn!(error = %err, "pending reservations not settled yet");
            }
        }
    }

    async fn settle_once(&self) -> Result<(), Error> {
        let before = chrono::Utc::now().timestamp_millis() - self.settle_after.as_millis() as i64;
        for pending in store::stale_pending(&self.db, before).await? {
            let id = &pending.reservation_id;
            match self.payments.get(id).await? {
                Some(payment) if payment.status() == PaymentStatus::Approved => {
                    tracing::info!(reservation_id = %id, "payment found approved; reservation now paid");
                    store::mark_paid(&self.db, &self.outbox, id, &payment.payment_id).await?;
                }
                // Declined, refunded, or never charged.
                _ => {
                    tracing::info!(reservation_id = %id, "no approved payment; pending reservation dropped");
                    store::forget_pending(&self.db, id).await?;
                }
            }
        }
        Ok(())
    }
}
