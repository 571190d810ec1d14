//! Reservations, their states and the rules between them.

use rentacar_types::{Money, RentalPeriod};

/// A reservation's lifecycle: `PAID` → `CONFIRMED` | `REJECTED`; `PAID`/`CONFIRMED` → `CANCELED`.
///
/// Before that, `PENDING_PAYMENT` marks a reservation whose payment call is under way or
/// ended without a clear answer. It is internal: reads never show it, and it becomes PAID
/// or disappears (see `checkout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    PendingPayment,
    Paid,
    Confirmed,
    Rejected,
    Canceled,
}

impl Status {
    const ALL: [Status; 5] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Confirmed,
        Self::Rejected,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Paid => "PAID",
            Self::Confirmed => "CONFIRMED",
            Self::Rejected => "REJECTED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Canceled)
    }

    /// The states from which a reservation may move to `next`.
    pub fn sources_of(next: Status) -> Vec<Status> {
        Self::ALL.into_iter().filter(|s| s.can_become(next)).collect()
    }

    /// Whether a reservation in this state may move to `next`.
    pub fn can_become(self, next: Status) -> bool {
        matches!(
            (self, next),
            (Self::PendingPayment, Self::Paid)
                | (Self::Paid, Self::Confirmed | Self::Rejected | Self::Canceled)
                | (Self::Confirmed, Self::Canceled)
        )
    }
}

/// A stored reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub reservation_id: String,
    pub request_id: String,
    pub customer_id: String,
    pub car_number: String,
    pub period: RentalPeriod,
    pub price: Money,
    pub status: Status,
    pub payment_id: String,
    /// Why the car's dates could not be booked, when rejected.
    pub rejection_reason: Option<String>,
    /// When `Reserve` recorded it, in milliseconds since the epoch.
    pub created_at_ms: i64,
    /// The payment method token it is charged with (empty for reservations recorded before
    /// it was kept).
    pub payment_method: String,
}

/// A validated `Reserve` request.
#[derive(Debug, Clone)]
pub struct ReserveCommand {
    pub request_id: String,
    pub customer_id: String,
    pub car_number: String,
    pub period: RentalPeriod,
    pub payment_method: String,
}

impl ReserveCommand {
    /// The reservation id, derived from customer and request id, so every retry of a call
    /// reaches payment under the same key and is charged once.
    pub fn reservation_id(&self) -> String {
        let key = format!("{}\u{0}{}", self.customer_id, self.request_id);
        uuid::Uuid::new_v5(&RESERVATION_NAMESPACE, key.as_bytes()).to_string()
    }

    /// Whether `existing` was made by this same request (a retry), rather than by another
    /// request that reused its request id. Concurrent calls with one request id therefore
    /// all carry the same payment method, and payment's answer to one is its answer to all.
    pub fn matches(&self, existing: &Reservation) -> bool {
        existing.customer_id == self.customer_id
            && existing.car_number == self.car_number
            && existing.period == self.period
            && (existing.payment_method.is_empty() || existing.payment_method == self.payment_method)
    }
}

/// Namespace of reservation ids derived from request ids.
const RESERVATION_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c1f_7a2e_93b4_4f0d_8e55_1d2c_3b4a_5f60);

/// The price of renting at `daily_price` for `period`, if payment can charge it.
pub fn price(daily_price: &Money, period: &RentalPeriod) -> Option<Money> {
    daily_price
        .times(period.days())
        .filter(|price| price.amount_minor <= Money::MAX_AMOUNT_MINOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_transitions_are_allowed() {
        assert!(Status::Paid.can_become(Status::Confirmed));
        assert!(Status::Paid.can_become(Status::Rejected));
        assert!(Status::Confirmed.can_become(Status::Canceled));
        assert!(!Status::Confirmed.can_become(Status::Paid));
        assert!(!Status::Rejected.can_become(Status::Canceled));
        assert!(!Status::Canceled.can_become(Status::Confirmed));
        assert!(Status::PendingPayment.can_become(Status::Paid));
        assert!(!Status::PendingPayment.can_become(Status::Confirmed));
    }

    #[test]
    fn a_request_id_always_gives_the_same_reservation_id() {
        let period = RentalPeriod::parse(
            "2026-12-01",
            "2026-12-03",
            &mut rentacar_types::FieldViolations::new(),
        )
        .unwrap();
        let command = |customer: &str| ReserveCommand {
            request_id: "r-1".into(),
            customer_id: customer.into(),
            car_number: "1111".into(),
            period,
            payment_method: "tok_visa".into(),
        };
        assert_eq!(
            command("alice").reservation_id(),
            command("alice").reservation_id()
        );
        assert_ne!(command("alice").reservation_id(), command("bob").reservation_id());
    }
}
