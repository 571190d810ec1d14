//! Reserve-and-pay, made safe against anything stopping halfway.
//!
//! A reservation is first recorded as PENDING_PAYMENT (invisible to reads), then charged,
//! then marked PAID with its event. The charge and the mark run in a task of their own, so
//! a caller that gives up (a deadline, a cancel) does not stop them halfway. Whatever still
//! ends up pending (a crash, payment's answer lost) is settled by [`Checkout::settle_pending`]:
//! it voids the reservation's payment, which refuses any charge still on its way and
//! returns one that was made; it then marks the reservation PAID, or forgets it. A pending
//! reservation is forgotten only when payment's answer holds for every call of it, so a
//! payment never stays without its reservation, and a reservation is never PAID without
//! its payment.

use std::time::Duration;

use rentacar_events::Outbox;
use rentacar_proto::{
    common::RefundCause,
    payment::{self as pb, PaymentStatus},
};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Error,
    domain::{self, Reservation, ReserveCommand, Status},
    payment::{PaymentClient, longest_charge},
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
            // Beyond the longest charge, with room for clocks of replicas that differ.
            settle_after: longest_charge(payment_timeout) + Duration::from_secs(2),
        }
    }

    /// Prices, charges and stores a reservation; a retry of the same request returns the
    /// first result.
    /// `token` is the customer's, passed on to payment.
    pub async fn reserve(&self, command: ReserveCommand, token: Option<&str>) -> Result<Reservation, Error> {
        let pending = match self.record_pending(&command).await? {
            Recorded::New(pending) => pending,
            Recorded::Taken(existing) => match Self::retried(&command, existing)? {
                Retried::Done(reservation) => return Ok(reservation),
                Retried::Pending(pending) => {
                    // Paying it now: the settler leaves it alone for a while.
                    self.payments.check_open()?;
                    store::touch_pending(&self.db, &pending.reservation_id).await?;
                    pending
                }
            },
        };

        let this = self.clone();
        let method = command.payment_method;
        // The charge continues the caller's trace in its own task.
        let token = token.map(str::to_owned);
        let charge = async move { this.pay(pending, &method, token.as_deref()).await };
        tokio::spawn(charge.instrument(tracing::Span::current()))
            .await
            .map_err(|e| Error::Interrupted(e.to_string()))?
    }

    /// Records the call's reservation as pending payment, or finds the one recorded under
    /// its request id before. A new call, the common one, is written without a read first:
    /// the request id is looked up only when the insert finds it taken.
    async fn record_pending(&self, command: &ReserveCommand) -> Result<Recorded, Error> {
        let reservation_id = command.reservation_id();
        // Nothing is written for a call that the open circuit would refuse anyway, but a
        // retry of a decided call is still answered.
        if let Err(open) = self.payments.check_open() {
            return self.recorded_before(&reservation_id, open).await;
        }
        let Some(daily_price) = store::daily_price(&self.db, &command.car_number).await? else {
            let not_found = Error::CarNotFound(command.car_number.clone());
            return self.recorded_before(&reservation_id, not_found).await;
        };
        let price = domain::price(&daily_price, &command.period).ok_or(Error::PriceOverflow)?;
        let pending = Reservation {
            reservation_id,
            request_id: command.request_id.clone(),
            customer_id: command.customer_id.clone(),
            car_number: command.car_number.clone(),
            period: command.period,
            price,
            status: Status::PendingPayment,
            payment_id: String::new(),
            rejection_reason: None,
            created_at_ms: store::now_ms(),
            payment_method: command.payment_method.clone(),
        };
        if store::insert_pending(&self.db, &pending).await? {
            return Ok(Recorded::New(pending));
        }
        // An earlier or concurrent call with the same request id recorded it.
        let missing = Error::ReservationNotFound(pending.reservation_id.clone());
        self.recorded_before(&pending.reservation_id, missing).await
    }

    /// The reservation recorded under this id before, or `otherwise` when there is none.
    async fn recorded_before(&self, reservation_id: &str, otherwise: Error) -> Result<Recorded, Error> {
        match store::find_any(&self.db, reservation_id).await? {
            Some(existing) => Ok(Recorded::Taken(existing)),
            None => Err(otherwise),
        }
    }

    /// What to do about a reservation already recorded under this call's request id: a
    /// retry gets the first result, or charges what was first asked while the payment's
    /// outcome is open; another rental under the same request id is refused.
    fn retried(command: &ReserveCommand, existing: Reservation) -> Result<Retried, Error> {
        if !command.matches(&existing) {
            return Err(Error::RequestIdReused(existing.request_id));
        }
        Ok(match existing.status {
            Status::PendingPayment => Retried::Pending(existing),
            _ => Retried::Done(existing),
        })
    }

    async fn pay(
        &self,
        pending: Reservation,
        payment_method: &str,
        token: Option<&str>,
    ) -> Result<Reservation, Error> {
        let id = &pending.reservation_id;
        // A reservation recorded before its payment method was kept may have been charged
        // with another one: payment's refusal of this method then says nothing about it.
        let method_known = !pending.payment_method.is_empty();
        let charged = self.payments.pay(&pending, payment_method, token).await;
        match charged {
            Ok(payment_id) => store::mark_paid(&self.db, &self.outbox, id, &payment_id).await,
            // Payment's answer holds for every call of this reservation: declined (and kept
            // so), refused for the payment method (which all calls with this request id
            // share), charged for something else, or refunded or voided. No charge of it can
            // succeed, so nothing stays behind.
            Err(err @ (Error::PaymentDeclined(_) | Error::PaymentClosed)) => {
                store::forget_pending(&self.db, id).await?;
                Err(err)
            }
            Err(err @ (Error::InvalidArgument(_) | Error::ChargedDifferently)) if method_known => {
                store::forget_pending(&self.db, id).await?;
                Err(err)
            }
            // Charged or not, nobody knows yet (or this call was not sent, while another
            // may have been): a retry or `settle_pending` finds out.
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
            // Claimed first: a retry that started paying it since is left alone.
            if !store::claim_stale(&self.db, &pending.reservation_id, before).await? {
                continue;
            }
            if let Err(err) = self.settle(&pending).await {
                tracing::warn!(reservation_id = %pending.reservation_id, error = %err, "pending reservation not settled yet");
            }
        }
        Ok(())
    }

    async fn settle(&self, pending: &Reservation) -> Result<(), Error> {
        let id = &pending.reservation_id;
        // Voiding settles it for good: a payment not made yet can no longer be made, and
        // one that was made comes back as it is.
        let payment = self
            .payments
            .refund(id, "reservation abandoned", RefundCause::Abandoned, None)
            .await?;
        match payment.status() {
            PaymentStatus::Approved if pays_for(&payment, pending) => {
                tracing::info!(reservation_id = %id, "payment found approved; reservation now paid");
                store::mark_paid(&self.db, &self.outbox, id, &payment.payment_id).await?;
            }
            PaymentStatus::Approved => {
                // Charged under this reservation's id for something else: not this
                // reservation's charge, and not for reservation to refund.
                tracing::error!(reservation_id = %id, payment_id = %payment.payment_id, "an approved payment under this reservation's id does not match it; pending reservation dropped");
                store::forget_pending(&self.db, id).await?;
            }
            status => {
                tracing::info!(reservation_id = %id, status = status.as_str_name(), "no approved payment; pending reservation dropped");
                store::forget_pending(&self.db, id).await?;
            }
        }
        Ok(())
    }
}

/// What recording a call's reservation found.
enum Recorded {
    /// Nothing under its request id: recorded now, pending payment.
    New(Reservation),
    /// A reservation recorded under its request id before.
    Taken(Reservation),
}

/// A reservation found under a call's request id.
enum Retried {
    /// Decided: the call returns it as it is.
    Done(Reservation),
    /// Its payment's outcome is open: the call charges it.
    Pending(Reservation),
}

/// Whether `payment` is the charge of `reservation`, not of some other call that reused
/// its id.
fn pays_for(payment: &pb::Payment, reservation: &Reservation) -> bool {
    let amount = payment.amount.clone().unwrap_or_default();
    payment.customer_id == reservation.customer_id
        && amount.amount_minor == reservation.price.amount_minor
        && amount.currency_code == reservation.price.currency_code
}
