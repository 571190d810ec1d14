//! What reservation consumes: fleet's registrations, into the car catalog replica.

use rentacar_events::{Delivery, Handler, HandlerError, Payload};
use rentacar_proto::events::EventEnvelope;
use sea_orm::DatabaseTransaction;

use crate::store::{self, catalog_car};

/// Keeps `catalog_cars` in step with `rentacar.fleet.car_registered`.
pub struct CatalogHandler;

impl Handler for CatalogHandler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        _: &Delivery,
    ) -> Result<(), HandlerError> {
        let Some(Payload::CarRegistered(car)) = &event.payload else {
            return Ok(());
        };
        let price = car.daily_price.clone().ok_or_else(|| {
            HandlerError::Failed(format!("car {} registered without a price", car.car_number))
        })?;
        store::upsert_catalog_car(
            txn,
            catalog_car::Model {
                car_number: car.car_number.clone(),
                model: car.model.clone(),
                daily_price_minor: price.amount_minor,
                currency_code: price.currency_code,
            },
        )
        .await?;
        tracing::info!(car_number = %car.car_number, "car added to the catalog");
        Ok(())
    }
}
