//! fleet's errors and the one place they become gRPC statuses.

use rentacar_runtime::status;
use rentacar_types::FieldViolations;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    InvalidArgument(FieldViolations),
    #[error("car {0} is not registered")]
    CarNotFound(String),
    #[error("only a manager (a token whose roles claim holds \"manager\") changes the fleet")]
    ManagersOnly,
    #[error("car number {0} is already registered with a different model or price")]
    CarNumberTaken(String),
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
            Error::ManagersOnly => {
                status::with_reason(Code::PermissionDenied, "MANAGER_ROLE_REQUIRED", err.to_string())
            }
            Error::CarNumberTaken(number) => status::already_exists("car", number, err.to_string()),
            Error::Database(db) => status::database(db),
        }
    }
}
