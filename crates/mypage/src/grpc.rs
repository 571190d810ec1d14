//! `rentacar.mypage.v1.MyPageService`.

use rentacar_proto::{
    common,
    mypage::{self as pb, my_page_service_server::MyPageService},
};
use rentacar_types::{FieldViolations, PageRequest, PageToken, RentalPeriod};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use crate::{Error, store};

pub struct MyPageApi {
    db: DatabaseConnection,
}

impl MyPageApi {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[tonic::async_trait]
impl MyPageService for MyPageApi {
    async fn list_my_reservations(
        &self,
        request: Request<pb::ListMyReservationsRequest>,
    ) -> Result<Response<pb::ListMyReservationsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let customer_id = violations.required("customer_id", &request.customer_id);
        let page = PageRequest::parse(request.page_size, &request.page_token, &mut violations);
        let after = match &page.after {
            Some(token) => token.parse::<i64>().map(Some).unwrap_or_else(|_| {
                violations.add("page_token", "is not a token returned by a previous page");
                None
            }),
            None => None,
        };
        violations.check(()).map_err(Error::from)?;
        let (rows, next) = store::list_for_customer(&self.db, &customer_id, &page, after)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListMyReservationsResponse {
            reservations: rows
                .into_iter()
                .map(|r| pb::MyReservation {
                    reservation_id: r.reservation_id,
                    car_number: r.car_number,
                    pickup_date: r.pickup_date,
                    return_date: r.return_date,
                    price: Some(common::Money {
                        currency_code: r.currency_code,
                        amount_minor: r.price_minor,
                    }),
                    status: r.status,
                    last_event_sequence: r.last_event_sequence as u64,
                })
                .collect(),
            next_page_token: next
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
        let car_number = violations.required("car_number", &request.car_number);
        let period = RentalPeriod::parse(&request.pickup_date, &request.return_date, &mut violations);
        let period = violations
            .check(period)
            .map_err(Error::from)?
            .expect("checked above");
        let car = store::car(&self.db, &car_number)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::CarNotFound(car_number.clone()))?;
        let holding = store::holding(&self.db, Some(&car_number), &period)
            .await
            .map_err(Error::from)?;
        let last_event_sequence = store::car_sequence(&self.db, &car).await.map_err(Error::from)? as u64;
        Ok(Response::new(pb::GetCarAvailabilityResponse {
            car_number,
            available: holding.is_empty(),
            conflicting_reservation_ids: holding.into_iter().map(|r| r.reservation_id).collect(),
            last_event_sequence,
        }))
    }

    async fn list_available_cars(
        &self,
        request: Request<pb::ListAvailableCarsRequest>,
    ) -> Result<Response<pb::ListAvailableCarsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let period = RentalPeriod::parse(&request.pickup_date, &request.return_date, &mut violations);
        let page = PageRequest::parse(request.page_size, &request.page_token, &mut violations);
        let period = violations
            .check(period)
            .map_err(Error::from)?
            .expect("checked above");
        let (cars, more) = store::available_cars(&self.db, &period, &page)
            .await
            .map_err(Error::from)?;
        let next_page_token = match (more, cars.last()) {
            (true, Some(last)) => PageToken::encode(&last.car_number),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAvailableCarsResponse {
            cars: cars
                .into_iter()
                .map(|c| pb::AvailableCar {
                    car_number: c.car_number,
                    model: c.model,
                    daily_price: Some(common::Money {
                        currency_code: c.currency_code,
                        amount_minor: c.daily_price_minor,
                    }),
                })
                .collect(),
            next_page_token,
        }))
    }
}
