//! payment's errors and the one place they become gRPC statuses.

use rentacar_runtime::status;
use rentacar_types::FieldViolations;
use tonic::{Code, Status};

/// `ErrorInfo.reason` of a declined payment, for clients to branch on.
pub const REASON_DECLINED: &str = "PAYMENT_DECLINED";
/// `ErrorInfo.reason` of a charge for an abandoned reservation.
pub const REASON_VOIDED: &str = "PAYMENT_VOIDED";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    InvalidArgument(FieldViolations),
    #[error("no payment for reservation {0}")]
    NotFound(String),
    #[error("a customer pays only for themself: customer_id must be empty or the token's subject")]
    ForAnotherCustomer,
    #[error("payment for reservation {reservation_id} was declined: {reason}")]
    Declined { reservation_id: String, reason: String },
    #[error("reservation {0} was already charged with a different amount or customer")]
    DifferentCharge(String),
    #[error("payment for reservation {0} was refunded; a new charge needs a new reservation")]
    AlreadyRefunded(String),
    #[error("payment for reservation {0} was declined, so there is nothing to refund")]
    NothingToRefund(String),
    #[error("reservation {0} was abandoned before it was paid; a new charge needs a new reservation")]
    Voided(String),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
}

impl From<FieldViolations> for Error {
    fn from(violations: FieldViolations) -> Self {
        Self::InvalidArgument(violations)
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::InvalidArgument(violations) => status::invalid_argument(violations),
            Error::NotFound(id) => status::not_found("payment", id),
            Error::ForAnotherCustomer => {
                status::with_reason(Code::PermissionDenied, "NOT_THE_CALLER", err.to_string())
            }
            Error::Declined { .. } => {
                status::with_reason(Code::FailedPrecondition, REASON_DECLINED, err.to_string())
            }
            Error::AlreadyRefunded(_) => {
                status::with_reason(Code::FailedPrecondition, "PAYMENT_REFUNDED", err.to_string())
            }
            Error::DifferentCharge(id) => status::already_exists("payment", id, err.to_string()),
            Error::Voided(_) => status::with_reason(Code::FailedPrecondition, REASON_VOIDED, err.to_string()),
            Error::NothingToRefund(_) => {
                status::with_reason(Code::FailedPrecondition, "NOT_REFUNDABLE", err.to_string())
            }
            Error::Database(db) => status::database(db),
        }
    }
}
