//! `rentacar.mypage.v1.MyPageService`: validates requests and answers from whichever
//! provider keeps the read model.

use std::sync::Arc;

use rentacar_auth::Caller;
use rentacar_proto::{
    common,
    mypage::{self as pb, my_page_service_server::MyPageService},
};
use rentacar_types::{FieldViolations, Money, PageRequest, PageToken, RentalPeriod};
use tonic::{Request, Response, Status};

use crate::{Error, views::ReadModel};

pub struct MyPageApi {
    views: Arc<dyn ReadModel>,
}

impl MyPageApi {
    pub fn new(views: Arc<dyn ReadModel>) -> Self {
        Self { views }
    }
}

/// The rental a question is about, bounded like the rentals that can be booked.
fn requested_period(
    pickup: &str,
    return_date: &str,
    violations: &mut FieldViolations,
) -> Option<RentalPeriod> {
    RentalPeriod::bookable(pickup, return_date, chrono::Utc::now().date_naive(), violations)
}

fn money(money: Money) -> Option<common::Money> {
    Some(common::Money {
        currency_code: money.currency_code,
        amount_minor: money.amount_minor,
    })
}

#[tonic::async_trait]
impl MyPageService for MyPageApi {
    async fn list_my_reservations(
        &self,
        request: Request<pb::ListMyReservationsRequest>,
    ) -> Result<Response<pb::ListMyReservationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        // mypage answers only for the caller; another customer's page reads as missing.
        let named = caller
            .acting_for(&request.customer_id)
            .ok_or_else(|| Error::CustomerNotFound(request.customer_id.clone()))?;
        let mut violations = FieldViolations::new();
        let customer_id = violations.id("customer_id", &named);
        let page = PageRequest::parse(request.page_size, &request.page_token, &mut violations);
        let after = match &page.after {
            Some(token) => token.parse::<i64>().map(Some).unwrap_or_else(|_| {
                violations.add("page_token", "is not a token returned by a previous page");
                None
            }),
            None => None,
        };
        violations.check(()).map_err(Error::from)?;
        let rows = self.views.my_reservations(&customer_id, page.size, after).await?;
        Ok(Response::new(pb::ListMyReservationsResponse {
            reservations: rows
                .items
                .into_iter()
                .map(|r| pb::MyReservation {
                    reservation_id: r.reservation_id,
                    car_number: r.car_number,
                    pickup_date: r.pickup_date,
                    return_date: r.return_date,
                    price: money(r.price),
                    status: r.status,
                    last_event_sequence: r.last_event_sequence as u64,
                })
                .collect(),
            next_page_token: rows
                .next
                .map(|seq| PageToken::encode(&seq.to_string()))
                .unwrap_or_default(),
        }))
    }

    async fn get_car_availability(
        &self,
        request: Request<pb::GetCarAvailabilityRequest>,
    ) -> Result<Response<pb::GetCarAvailabilityResponse>, Status> {
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let car_number = violations.car_number("car_number", &request.car_number);
        let period = requested_period(&request.pickup_date, &request.return_date, &mut violations);
        let Some(period) = violations.check(period).map_err(Error::from)? else {
            unreachable!("a period without violations is parsed")
        };
        let availability = self
            .views
            .car_availability(&car_number, &period)
            .await?
            .ok_or_else(|| Error::CarNotFound(car_number.clone()))?;
        Ok(Response::new(pb::GetCarAvailabilityResponse {
            car_number,
            available: availability.conflicting_reservation_ids.is_empty(),
            conflicting_reservation_ids: availability.conflicting_reservation_ids,
            last_event_sequence: availability.last_event_sequence as u64,
        }))
    }

    async fn list_available_cars(
        &self,
        request: Request<pb::ListAvailableCarsRequest>,
    ) -> Result<Response<pb::ListAvailableCarsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let period = requested_period(&request.pickup_date, &request.return_date, &mut violations);
        let page = PageRequest::parse(request.page_size, &request.page_token, &mut violations);
        let Some(period) = violations.check(period).map_err(Error::from)? else {
            unreachable!("a period without violations is parsed")
        };
        let cars = self
            .views
            .available_cars(&period, page.size, page.after.as_deref())
            .await?;
        Ok(Response::new(pb::ListAvailableCarsResponse {
            cars: cars
                .items
                .into_iter()
                .map(|c| pb::AvailableCar {
                    car_number: c.car_number,
                    model: c.model,
                    daily_price: money(c.daily_price),
                })
                .collect(),
            next_page_token: cars.next.map(|n| PageToken::encode(&n)).unwrap_or_default(),
        }))
    }
}
