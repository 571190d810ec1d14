//! mypage's errors and the one place they become gRPC statuses.

use rentacar_runtime::status;
use rentacar_types::FieldViolations;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    InvalidArgument(FieldViolations),
    #[error("car {0} is not known to the read model yet")]
    CarNotFound(String),
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
            Error::Database(db) => status::database(db),
        }
    }
}
