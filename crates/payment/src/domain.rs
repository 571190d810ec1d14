//! Payment methods and payment states.

use rentacar_types::Money;

/// A payment method token. There is no card network behind this service: the test tokens
/// behave like Stripe's, which is what clients and load tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    /// `tok_visa`: always approved.
    AlwaysApproves,
    /// `tok_chargeDeclined`: always declined as `card_declined`.
    AlwaysDeclined,
}

impl PaymentMethod {
    pub const APPROVING_TOKEN: &str = "tok_visa";
    pub const DECLINING_TOKEN: &str = "tok_chargeDeclined";

    pub fn from_token(token: &str) -> Option<Self> {
        match token.trim() {
            Self::APPROVING_TOKEN => Some(Self::AlwaysApproves),
            Self::DECLINING_TOKEN => Some(Self::AlwaysDeclined),
            _ => None,
        }
    }

    pub fn token(self) -> &'static str {
        match self {
            Self::AlwaysApproves => Self::APPROVING_TOKEN,
            Self::AlwaysDeclined => Self::DECLINING_TOKEN,
        }
    }

    /// The charge's outcome: `None` when approved, the decline reason otherwise.
    pub fn charge(self) -> Option<&'static str> {
        match self {
            Self::AlwaysApproves => None,
            Self::AlwaysDeclined => Some("card_declined"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Approved,
    Declined,
    Refunded,
    /// Abandoned before any charge: a later charge is refused.
    Voided,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
            Self::Refunded => "REFUNDED",
            Self::Voided => "VOIDED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Approved, Self::Declined, Self::Refunded, Self::Voided]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// What a payment is for, passed through to the approval event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rental {
    pub car_number: String,
    pub pickup_date: String,
    pub return_date: String,
}

/// A validated `Pay` request.
#[derive(Debug, Clone)]
pub struct Charge {
    pub reservation_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub method: PaymentMethod,
    pub rental: Rental,
}

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: String,
    pub reservation_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub status: PaymentStatus,
    pub decline_reason: Option<String>,
    pub rental: Rental,
}

impl Payment {
    /// Whether `charge` is a repeat of the call that created this payment. A different
    /// amount, customer or rental under the same reservation id is a client bug, not a retry.
    pub fn is_same_charge(&self, charge: &Charge) -> bool {
        self.customer_id == charge.customer_id && self.amount == charge.amount && self.rental == charge.rental
    }
}
