//! mypage's errors and the one place they become gRPC statuses.

use std::time::Duration;

use rentacar_runtime::status;
use rentacar_types::FieldViolations;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    InvalidArgument(FieldViolations),
    #[error("car {0} is not known to the read model yet")]
    CarNotFound(String),
    #[error("customer {0} not found")]
    CustomerNotFound(String),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
    #[error("DynamoDB call failed")]
    Dynamodb(#[from] crate::dynamodb::DynamodbError),
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
            Error::CustomerNotFound(id) => status::not_found("customer", id),
            Error::Database(db) => status::database(db),
            Error::Dynamodb(dynamodb) if dynamodb.is_transient() => {
                tracing::warn!(error = %dynamodb, "DynamoDB call failed; the caller may retry");
                status::unavailable(
                    "DATABASE_UNAVAILABLE",
                    "the read model's table is not answering; try again",
                    Duration::from_secs(1),
                )
            }
            Error::Dynamodb(dynamodb) => {
                tracing::error!(error = %dynamodb, "DynamoDB call failed");
                status::internal()
            }
        }
    }
}
