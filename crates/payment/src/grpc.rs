//! `rentacar.payment.v1.PaymentService`.

use rentacar_auth::Caller;
use rentacar_events::Outbox;
use rentacar_proto::{
    common::RefundCause,
    payment::{self as pb, payment_service_server::PaymentService},
};
use rentacar_types::{FieldViolations, MAX_FREE_TEXT_CHARS, Money, RentalPeriod};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use crate::{
    Error,
    domain::{Charge, Payment, PaymentMethod, PaymentStatus, Rental},
    store,
};

pub struct PaymentApi {
    db: DatabaseConnection,
    outbox: Outbox,
}

impl PaymentApi {
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    /// The payment of `reservation_id`, if the caller may see it: a customer sees only
    /// their own; reservation acting on its own sees any.
    async fn find_for(&self, caller: &Caller, reservation_id: String) -> Result<Payment, Error> {
        store::find(&self.db, &reservation_id)
            .await?
            .filter(|payment| caller.may_access(&payment.customer_id))
            .ok_or(Error::NotFound(reservation_id))
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn pay(&self, request: Request<pb::PayRequest>) -> Result<Response<pb::PayResponse>, Status> {
        let caller = Caller::of(&request)?;
        let mut request = request.into_inner();
        request.customer_id = caller
            .acting_for(&request.customer_id)
            .ok_or(Error::ForAnotherCustomer)?;
        let charge = Charge::try_from(request)?;
        let payment = store::pay(&self.db, &self.outbox, charge).await?;
        Ok(Response::new(pb::PayResponse {
            payment: Some(payment.into()),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let caller = Caller::of(&request)?;
        let reservation_id = required_reservation_id(&request.get_ref().reservation_id)?;
        let payment = self.find_for(&caller, reservation_id).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(payment.into()),
        }))
    }

    async fn cancel_payment(
        &self,
        request: Request<pb::CancelPaymentRequest>,
    ) -> Result<Response<pb::CancelPaymentResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let reservation_id = violations.id("reservation_id", &request.reservation_id);
        let reason = violations.optional_text("reason", &request.reason, MAX_FREE_TEXT_CHARS);
        let cause = match RefundCause::try_from(request.cause) {
            Ok(RefundCause::Unspecified) | Err(_) => {
                violations.add(
                    "cause",
                    "is required: CUSTOMER_CANCELED, BOOKING_REJECTED or ABANDONED",
                );
                RefundCause::Unspecified
            }
            Ok(cause) => cause,
        };
        violations.check(()).map_err(Error::from)?;
        if let Caller::Customer(_) = caller {
            // Only the customer's own payment; another's reads as missing.
            self.find_for(&caller, reservation_id.clone()).await?;
        }
        let payment = store::refund(&self.db, &self.outbox, &reservation_id, &reason, cause).await?;
        Ok(Response::new(pb::CancelPaymentResponse {
            payment: Some(payment.into()),
        }))
    }
}

fn required_reservation_id(value: &str) -> Result<String, Error> {
    let mut violations = FieldViolations::new();
    let id = violations.id("reservation_id", value);
    Ok(violations.check(id)?)
}

/// The rental of a charge: a car number and dates as reservation validated them. They go
/// into the approval event, so they are bounded here too.
fn rental(rental: Option<&pb::Rental>, violations: &mut FieldViolations) -> Rental {
    let Some(rental) = rental else {
        violations.add("rental", "is required");
        return Rental::default();
    };
    let car_number = violations.car_number("rental.car_number", &rental.car_number);
    let mut dates = FieldViolations::new();
    let period = RentalPeriod::parse(&rental.pickup_date, &rental.return_date, &mut dates);
    for (field, description) in dates.iter() {
        violations.add(format!("rental.{field}"), description);
    }
    match period {
        Some(period) => Rental {
            car_number,
            pickup_date: period.pickup().to_string(),
            return_date: period.return_date().to_string(),
        },
        None => Rental::default(),
    }
}

impl TryFrom<pb::PayRequest> for Charge {
    type Error = Error;

    fn try_from(request: pb::PayRequest) -> Result<Self, Error> {
        let mut violations = FieldViolations::new();
        let reservation_id = violations.id("reservation_id", &request.reservation_id);
        let customer_id = violations.id("customer_id", &request.customer_id);
        let amount = Money::positive(
            "amount",
            request.amount.as_ref(),
            Money::MAX_AMOUNT_MINOR,
            &mut violations,
        );
        let method = match violations.id("payment_method", &request.payment_method).as_str() {
            "" => None,
            token => {
                let method = PaymentMethod::from_token(token);
                if method.is_none() {
                    violations.add(
                        "payment_method",
                        format!(
                            "is not a known token; use {} (approves) or {} (declined)",
                            PaymentMethod::APPROVING_TOKEN,
                            PaymentMethod::DECLINING_TOKEN
                        ),
                    );
                }
                method
            }
        };
        let rental = rental(request.rental.as_ref(), &mut violations);
        match (amount, method) {
            (Some(amount), Some(method)) if violations.is_empty() => Ok(Self {
                reservation_id,
                customer_id,
                amount,
                method,
                rental,
            }),
            _ => Err(Error::InvalidArgument(violations)),
        }
    }
}

impl From<Payment> for pb::Payment {
    fn from(payment: Payment) -> Self {
        let status = match payment.status {
            PaymentStatus::Approved => pb::PaymentStatus::Approved,
            PaymentStatus::Declined => pb::PaymentStatus::Declined,
            PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
            PaymentStatus::Voided => pb::PaymentStatus::Voided,
        };
        Self {
            payment_id: payment.payment_id,
            reservation_id: payment.reservation_id,
            customer_id: payment.customer_id,
            amount: Some(payment.amount.into()),
            status: status.into(),
            decline_reason: payment.decline_reason.unwrap_or_default(),
            rental: Some(pb::Rental {
                car_number: payment.rental.car_number,
                pickup_date: payment.rental.pickup_date,
                return_date: payment.rental.return_date,
            }),
        }
    }
}
