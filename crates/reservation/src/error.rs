//! reservation's errors and the one place they become gRPC statuses.

use std::time::Duration;

use rentacar_runtime::status;
use rentacar_types::FieldViolations;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    InvalidArgument(FieldViolations),
    #[error("car {0} is not in the catalog")]
    CarNotFound(String),
    #[error("reservation {0} not found")]
    ReservationNotFound(String),
    #[error("customer {0} not found")]
    CustomerNotFound(String),
    #[error("a customer reserves only for themself: customer_id must be empty or the token's subject")]
    ForAnotherCustomer,
    #[error("request id {0:?} was already used for a different reservation")]
    RequestIdReused(String),
    #[error("payment declined: {0}")]
    PaymentDeclined(String),
    #[error("the payment service is not answering; try again")]
    PaymentUnavailable(#[source] tonic::Status),
    #[error("the payment service failed")]
    PaymentFailed(#[source] tonic::Status),
    #[error("the payment service is failing; reservations are paused, try again later")]
    PaymentPaused(Duration),
    #[error("the payment of this request was refunded or voided; use a new request id")]
    PaymentClosed,
    #[error("this reservation was already charged differently; use a new request id")]
    ChargedDifferently,
    #[error("the payment of this reservation was declined, so there is nothing to refund")]
    NothingToRefund,
    #[error("reservation {id} is {status} and cannot be {action}")]
    IllegalTransition {
        id: String,
        status: &'static str,
        action: &'static str,
    },
    #[error("the reservation was interrupted: {0}")]
    Interrupted(String),
    #[error("the price overflows")]
    PriceOverflow,
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
            Error::CarNotFound(number) => status::not_found("car", number),
            Error::ReservationNotFound(id) => status::not_found("reservation", id),
            Error::CustomerNotFound(id) => status::not_found("customer", id),
            Error::ForAnotherCustomer => {
                status::with_reason(Code::PermissionDenied, "NOT_THE_CALLER", err.to_string())
            }
            Error::RequestIdReused(id) => status::already_exists("request", id, err.to_string()),
            Error::PaymentDeclined(_) => {
                status::with_reason(Code::FailedPrecondition, "PAYMENT_DECLINED", err.to_string())
            }
            Error::PaymentUnavailable(cause) => {
                tracing::warn!(code = ?cause.code(), message = cause.message(), "payment unavailable");
                status::unavailable("PAYMENT_UNAVAILABLE", err.to_string(), Duration::from_secs(1))
            }
            Error::PaymentPaused(retry_after) => {
                status::unavailable("PAYMENT_PAUSED", err.to_string(), *retry_after)
            }
            Error::PaymentClosed => {
                status::with_reason(Code::FailedPrecondition, "PAYMENT_CLOSED", err.to_string())
            }
            Error::PaymentFailed(cause) => {
                tracing::error!(code = ?cause.code(), message = cause.message(), "payment failed");
                status::internal()
            }
            Error::ChargedDifferently => status::already_exists("request", "request_id", err.to_string()),
            Error::NothingToRefund => {
                status::with_reason(Code::FailedPrecondition, "NOT_REFUNDABLE", err.to_string())
            }
            Error::IllegalTransition { .. } => {
                status::with_reason(Code::FailedPrecondition, "ILLEGAL_TRANSITION", err.to_string())
            }
            Error::PriceOverflow => {
                let mut violations = FieldViolations::new();
                violations.add("return_date", "makes the price too large");
                status::invalid_argument(&violations)
            }
            Error::Interrupted(_) => {
                tracing::error!(error = %err, "reserve interrupted");
                status::internal()
            }
            Error::Database(db) => status::database(db),
        }
    }
}
