//! The payment service as reservation sees it: a client with a deadline on every call, and
//! the translation of payment's statuses into reservation's errors.

use std::time::Duration;

use rentacar_proto::payment::{self as pb, payment_service_client::PaymentServiceClient};
use rentacar_types::{FieldViolations, Money, RentalPeriod};
use tonic::{
    Code, Status,
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt;

use crate::Error;

/// How long establishing a connection to payment may take before the call fails over to
/// UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct PaymentClient {
    client: PaymentServiceClient<Channel>,
}

impl PaymentClient {
    /// A client that connects on first use, so reservation starts even while payment is down.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            client: PaymentServiceClient::new(channel),
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

    /// Refunds the reservation's payment. Refunding twice is harmless on payment's side.
    pub async fn refund(&self, reservation_id: &str, reason: &str) -> Result<(), Error> {
        let request = pb::CancelPaymentRequest {
            reservation_id: reservation_id.to_owned(),
            reason: reason.to_owned(),
        };
        self.client
            .clone()
            .cancel_payment(request)
            .await
            .map_err(from_status)?;
        Ok(())
    }
}

/// What a status from payment means to a reservation's caller.
fn from_status(status: Status) -> Error {
    match status.code() {
        Code::FailedPrecondition => Error::PaymentDeclined(status.message().to_owned()),
        // Only the payment method is the caller's to fix; the rest reservation validated.
        Code::InvalidArgument => {
            let mut violations = FieldViolations::new();
            for violation in status
                .get_details_bad_request()
                .map(|b| b.field_violations)
                .unwrap_or_default()
            {
                if violation.field == "payment_method" {
                    violations.add("payment_method", violation.description);
                }
            }
            if violations.is_empty() {
                Error::PaymentFailed(status.message().to_owned())
            } else {
                Error::InvalidArgument(violations)
            }
        }
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Unknown => Error::PaymentUnavailable(format!("{:?}: {}", status.code(), status.message())),
        _ => Error::PaymentFailed(format!("{:?}: {}", status.code(), status.message())),
    }
}
