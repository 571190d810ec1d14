//! `tonic::Status` values with `google.rpc` error details.
//!
//! Each service maps its own error enum to a status in one `From` impl; these helpers keep
//! the details (field violations, retry hints, reasons) the same shape everywhere.

use std::time::Duration;

use rentacar_types::FieldViolations;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `ErrorInfo.domain` of every rentacar error.
pub const ERROR_DOMAIN: &str = "rentacar";

/// INVALID_ARGUMENT with a `BadRequest` listing every violation.
pub fn invalid_argument(violations: &FieldViolations) -> Status {
    let details = ErrorDetails::with_bad_request(
        violations
            .iter()
            .map(|(field, description)| FieldViolation::new(field, description))
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid request: {violations}"),
        details,
    )
}

/// NOT_FOUND with a `ResourceInfo` naming what was looked for.
pub fn not_found(resource_type: &str, resource_name: &str) -> Status {
    let details = ErrorDetails::with_resource_info(resource_type, resource_name, "", "not found");
    Status::with_error_details(
        Code::NotFound,
        format!("{resource_type} {resource_name:?} not found"),
        details,
    )
}

/// ALREADY_EXISTS with a `ResourceInfo` naming the clashing resource.
pub fn already_exists(resource_type: &str, resource_name: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    let details = ErrorDetails::with_resource_info(resource_type, resource_name, "", message.clone());
    Status::with_error_details(Code::AlreadyExists, message, details)
}

/// A code with an `ErrorInfo` whose `reason` a client can branch on
/// (for example FAILED_PRECONDITION / `PAYMENT_DECLINED`).
pub fn with_reason(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// UNAVAILABLE with a `RetryInfo`: the caller may try again after `retry_after`.
pub fn unavailable(reason: &str, message: impl Into<String>, retry_after: Duration) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    Status::with_error_details(Code::Unavailable, message, details)
}

/// INTERNAL without leaking the cause, which the caller logs instead.
pub fn internal() -> Status {
    Status::internal("internal error; it has been logged")
}

/// A database failure. One that may pass by itself (a lost connection, a busy SQLite file,
/// a PostgreSQL serialization failure or deadlock) is UNAVAILABLE, so the caller retries;
/// anything else is INTERNAL. The cause is logged here, not sent.
pub fn database(err: &sea_orm::DbErr) -> Status {
    if crate::db::is_transient(err) {
        tracing::warn!(error = %err, "database call failed; the caller may retry");
        unavailable(
            "DATABASE_UNAVAILABLE",
            "the database is not answering; try again",
            Duration::from_secs(1),
        )
    } else {
        tracing::error!(error = %err, "database call failed");
        internal()
    }
}
