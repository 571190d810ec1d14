//! `rentacar.reservation.v1.ReservationService`.

use rentacar_auth::Caller;
use rentacar_events::Outbox;
use rentacar_proto::{
    common::RefundCause,
    reservation::{self as pb, reservation_service_server::ReservationService},
};
use rentacar_types::{FieldViolations, PageRequest, PageToken, RentalPeriod};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    Error,
    checkout::Checkout,
    domain::{Reservation, ReserveCommand, Status as State},
    metrics::SagaMetrics,
    payment::PaymentClient,
    store,
    watch::{Changes, WatchStream},
};

pub struct ReservationApi {
    db: DatabaseConnection,
    outbox: Outbox,
    payments: PaymentClient,
    checkout: Checkout,
    changes: Changes,
    metrics: SagaMetrics,
    /// Ends open watches when the server stops, so they do not hold up the drain.
    shutdown: CancellationToken,
}

impl ReservationApi {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        payments: PaymentClient,
        checkout: Checkout,
        changes: Changes,
        metrics: SagaMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            db,
            outbox,
            payments,
            checkout,
            changes,
            metrics,
            shutdown,
        }
    }

    /// The reservation `id`, if the caller may see it. Another customer's reservation reads
    /// as missing: ids are not secrets to guard, but whether they exist is nobody else's
    /// business.
    async fn find_for(&self, caller: &Caller, id: String) -> Result<Reservation, Error> {
        store::find(&self.db, &id)
            .await?
            .filter(|r| caller.may_access(&r.customer_id))
            .ok_or(Error::ReservationNotFound(id))
    }

    async fn cancel(
        &self,
        caller: &Caller,
        reservation_id: String,
        customer_id: String,
    ) -> Result<Reservation, Error> {
        let reservation = self.find_for(caller, reservation_id.clone()).await?;
        if reservation.customer_id != customer_id {
            return Err(Error::ReservationNotFound(reservation_id));
        }
        match reservation.status {
            State::Canceled => return Ok(reservation),
            status if !status.can_become(State::Canceled) => {
                return Err(Error::IllegalTransition {
                    id: reservation_id,
                    status: status.as_str(),
                    action: "canceled",
                });
            }
            _ => {}
        }
        self.payments
            .refund(
                &reservation_id,
                "canceled by customer",
                RefundCause::CustomerCanceled,
                caller.token(),
            )
            .await?;
        let (now, canceled_here) = store::cancel(&self.db, &self.outbox, &reservation).await?;
        self.changes.notify(&now.reservation_id);
        if canceled_here {
            self.metrics.ended(State::Canceled, now.created_at_ms);
        }
        match now.status {
            State::Canceled => Ok(now),
            // The saga rejected it meanwhile; the refund was its refund.
            status => Err(Error::IllegalTransition {
                id: reservation_id,
                status: status.as_str(),
                action: "canceled",
            }),
        }
    }
}

#[tonic::async_trait]
impl ReservationService for ReservationApi {
    type WatchReservationStream = WatchStream;

    async fn watch_reservation(
        &self,
        request: Request<pb::WatchReservationRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = Caller::of(&request)?;
        let mut violations = FieldViolations::new();
        let id = violations.id("reservation_id", &request.get_ref().reservation_id);
        violations.check(()).map_err(Error::from)?;
        let watch = self.changes.watch(&id)?;
        let current = self.find_for(&caller, id).await?;
        Ok(Response::new(watch.stream(
            self.db.clone(),
            current,
            self.shutdown.clone(),
        )))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let caller = Caller::of(&request)?;
        let mut request = request.into_inner();
        request.customer_id = caller
            .acting_for(&request.customer_id)
            .ok_or(Error::ForAnotherCustomer)?;
        let command = ReserveCommand::try_from(request)?;
        let reservation = self.checkout.reserve(command, caller.token()).await?;
        Ok(Response::new(pb::ReserveResponse {
            reservation: Some(reservation.into()),
        }))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let mut violations = FieldViolations::new();
        let id = violations.id("reservation_id", &request.get_ref().reservation_id);
        violations.check(()).map_err(Error::from)?;
        let reservation = self.find_for(&caller, id).await?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(reservation.into()),
        }))
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        // Another customer's list reads as missing, like their reservations.
        let named = caller
            .acting_for(&request.customer_id)
            .ok_or_else(|| Error::CustomerNotFound(request.customer_id.clone()))?;
        let mut violations = FieldViolations::new();
        let customer_id = violations.id("customer_id", &named);
        let page = PageRequest::parse(request.page_size, &request.page_token, &mut violations);
        violations.check(()).map_err(Error::from)?;
        let (reservations, next) = store::list_for_customer(&self.db, &customer_id, &page).await?;
        Ok(Response::new(pb::ListReservationsResponse {
            reservations: reservations.into_iter().map(Into::into).collect(),
            next_page_token: next.map(|cursor| PageToken::encode(&cursor)).unwrap_or_default(),
        }))
    }

    async fn cancel_reservation(
        &self,
        request: Request<pb::CancelReservationRequest>,
    ) -> Result<Response<pb::CancelReservationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let reservation_id = violations.id("reservation_id", &request.reservation_id);
        let named = caller.acting_for(&request.customer_id);
        let customer_id = violations.id("customer_id", named.as_deref().unwrap_or("-"));
        violations.check(()).map_err(Error::from)?;
        if named.is_none() {
            return Err(Error::ReservationNotFound(reservation_id).into());
        }
        let reservation = self.cancel(&caller, reservation_id, customer_id).await?;
        Ok(Response::new(pb::CancelReservationResponse {
            reservation: Some(reservation.into()),
        }))
    }
}

impl TryFrom<pb::ReserveRequest> for ReserveCommand {
    type Error = Error;

    fn try_from(request: pb::ReserveRequest) -> Result<Self, Error> {
        let mut violations = FieldViolations::new();
        let request_id = violations.id("request_id", &request.request_id);
        let customer_id = violations.id("customer_id", &request.customer_id);
        let car_number = violations.car_number("car_number", &request.car_number);
        let today = chrono::Utc::now().date_naive();
        let period =
            RentalPeriod::bookable(&request.pickup_date, &request.return_date, today, &mut violations);
        let payment_method = violations.id("payment_method", &request.payment_method);
        match period {
            Some(period) if violations.is_empty() => Ok(Self {
                request_id,
                customer_id,
                car_number,
                period,
                payment_method,
            }),
            _ => Err(Error::InvalidArgument(violations)),
        }
    }
}

impl From<Reservation> for pb::Reservation {
    fn from(r: Reservation) -> Self {
        let status = match r.status {
            State::Paid => pb::ReservationStatus::Paid,
            State::Confirmed => pb::ReservationStatus::Confirmed,
            State::Rejected => pb::ReservationStatus::Rejected,
            State::Canceled => pb::ReservationStatus::Canceled,
            // Never read out: pending reservations are hidden from every read.
            State::PendingPayment => pb::ReservationStatus::Unspecified,
        };
        Self {
            reservation_id: r.reservation_id,
            customer_id: r.customer_id,
            car_number: r.car_number,
            pickup_date: r.period.pickup().to_string(),
            return_date: r.period.return_date().to_string(),
            price: Some(r.price.into()),
            status: status.into(),
            payment_id: r.payment_id,
            request_id: r.request_id,
            rejection_reason: r.rejection_reason.unwrap_or_default(),
        }
    }
}
