//! `rentacar.fleet.v1.FleetService`: requests in, domain values through, responses out.

use rentacar_auth::Caller;
use rentacar_events::Outbox;
use rentacar_proto::fleet::{self as pb, fleet_service_server::FleetService};
use rentacar_types::{FieldViolations, PageRequest, PageToken};
use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use crate::{Error, domain::Car, store};

pub struct FleetApi {
    db: DatabaseConnection,
    outbox: Outbox,
}

impl FleetApi {
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox }
    }
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn register_car(
        &self,
        request: Request<pb::RegisterCarRequest>,
    ) -> Result<Response<pb::RegisterCarResponse>, Status> {
        if !Caller::of(&request)?.is_manager() {
            return Err(Error::ManagersOnly.into());
        }
        let request = request.into_inner();
        let car = Car::new(&request.car_number, &request.model, request.daily_price.as_ref())
            .map_err(Error::from)?;
        let car = store::register(&self.db, &self.outbox, car).await?;
        Ok(Response::new(pb::RegisterCarResponse {
            car: Some(car.into()),
        }))
    }

    async fn get_car(
        &self,
        request: Request<pb::GetCarRequest>,
    ) -> Result<Response<pb::GetCarResponse>, Status> {
        let mut violations = FieldViolations::new();
        let number = violations.car_number("car_number", &request.get_ref().car_number);
        violations.check(()).map_err(Error::from)?;
        let car = store::find(&self.db, &number)
            .await?
            .ok_or(Error::CarNotFound(number))?;
        Ok(Response::new(pb::GetCarResponse {
            car: Some(car.into()),
        }))
    }

    async fn list_cars(
        &self,
        request: Request<pb::ListCarsRequest>,
    ) -> Result<Response<pb::ListCarsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let page = PageRequest::parse(request.page_size, &request.page_token, &mut violations);
        violations.check(()).map_err(Error::from)?;
        let (cars, more) = store::list(&self.db, &page).await?;
        let next_page_token = match (more, cars.last()) {
            (true, Some(last)) => PageToken::encode(&last.car_number),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCarsResponse {
            cars: cars.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}

impl From<Car> for pb::Car {
    fn from(car: Car) -> Self {
        Self {
            car_number: car.car_number,
            model: car.model,
            daily_price: Some(car.daily_price.into()),
        }
    }
}
