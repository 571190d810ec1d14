//! The payment service as reservation sees it: a client with a deadline on every call, and
//! the translation of payment's statuses into reservation's errors.

use std::time::Duration;

use rentacar_proto::{
    common::RefundCause,
    payment::{self as pb, payment_service_client::PaymentServiceClient},
};
use rentacar_types::{FieldViolations, Money, RentalPeriod};
use tonic::{
    Code, Status,
    transport::{Channel, Endpoint},
};
use tonic_tracing_opentelemetry::middleware::client::{OtelGrpcLayer, OtelGrpcService};
use tonic_types::StatusExt;

use crate::Error;

/// How long establishing a connection to payment may take before the call fails over to
/// UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct PaymentClient {
    /// Each call is a client span whose context goes along as `traceparent`.
    client: PaymentServiceClient<OtelGrpcService<Channel>>,
}

impl PaymentClient {
    /// A client that connects on first use, so reservation starts even while payment is down.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .connect_lazy();
        let traced = tower::ServiceBuilder::new().layer(OtelGrpcLayer).service(channel);
        Ok(Self {
            client: PaymentServiceClient::new(traced),
        })
    }

    /// Charges `price` for the rental; returns the payment id.
    pub async fn pay(
        &self,
        reservation_id: &str,
        customer_id: &str,
        price: &Money,
        payment_method: &str,
        car_number: &str,
        period: &RentalPeriod,
    ) -> Result<String, Error> {
        let request = pb::PayRequest {
            reservation_id: reservation_id.to_owned(),
            customer_id: customer_id.to_owned(),
            amount: Some(price.clone().into()),
            payment_method: payment_method.to_owned(),
            rental: Some(pb::Rental {
                car_number: car_number.to_owned(),
                pickup_date: period.pickup().to_string(),
                return_date: period.return_date().to_string(),
            }),
        };
        let response = self.client.clone().pay(request).await.map_err(from_status)?;
        Ok(response
            .into_inner()
            .payment
            .map(|p| p.payment_id)
            .unwrap_or_default())
    }

    /// The reservation's payment as payment knows it, if any.
    pub async fn get(&self, reservation_id: &str) -> Result<Option<pb::Payment>, Error> {
        let request = pb::GetPaymentRequest {
            reservation_id: reservation_id.to_owned(),
        };
        match self.client.clone().get_payment(request).await {
            Ok(response) => Ok(response.into_inner().payment),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(from_status(status)),
        }
    }

    /// Refunds the reservation's payment. Refunding twice is harmless on payment's side.
    pub async fn refund(&self, reservation_id: &str, reason: &str, cause: RefundCause) -> Result<(), Error> {
        let request = pb::CancelPaymentRequest {
            reservation_id: reservation_id.to_owned(),
            reason: reason.to_owned(),
            cause: cause.into(),
        };
        self.client
            .clone()
            .cancel_payment(request)
            .await
            .map_err(from_status)?;
        Ok(())
    }
}

/// What a status from payment means to a reservation's caller. Payment's own messages are
/// logged, not passed on: they speak of payment's internals.
fn from_status(status: Status) -> Error {
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    match status.code() {
        Code::FailedPrecondition if reason == "PAYMENT_DECLINED" => {
            Error::PaymentDeclined(status.message().to_owned())
        }
        Code::FailedPrecondition if reason == "NOT_REFUNDABLE" => Error::NothingToRefund,
        // Only the payment method is the caller's to fix; the rest reservation validated.
        Code::InvalidArgument => {
            let mut violations = FieldViolations::new();
            let details = status.get_details_bad_request().map(|b| b.field_violations);
            for violation in details.unwrap_or_default() {
                if violation.field == "payment_method" {
                    violations.add("payment_method", violation.description);
                }
            }
            if violations.is_empty() {
                Error::PaymentFailed(status)
            } else {
                Error::InvalidArgument(violations)
            }
        }
        Code::AlreadyExists => Error::ChargedDifferently,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Unknown => Error::PaymentUnavailable(status),
        _ => Error::PaymentFailed(status),
    }
}
