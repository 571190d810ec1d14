//! The `cars` table.

use rentacar_events::{Event, Outbox, Payload};
use rentacar_proto::events::CarRegistered;
use rentacar_runtime::db;
use rentacar_types::{Money, PageRequest};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::{Error, SERVICE, domain::Car};

pub mod car {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cars")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub car_number: String,
        pub model: String,
        pub daily_price_minor: i64,
        pub currency_code: String,
        pub registered_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl From<car::Model> for Car {
    fn from(row: car::Model) -> Self {
        Self {
            car_number: row.car_number,
            model: row.model,
            daily_price: Money {
                currency_code: row.currency_code,
                amount_minor: row.daily_price_minor,
            },
        }
    }
}

/// Registers `car` and stores its `car_registered` event in the same transaction. The same
/// registration repeated (a client or mesh retry) returns the car without a second event.
pub async fn register(db: &DatabaseConnection, outbox: &Outbox, car: Car) -> Result<Car, Error> {
    match register_once(db, outbox, car.clone()).await {
        // A concurrent identical call inserted first: this one now finds its car.
        Err(Error::Database(err)) if db::is_unique_violation(&err) => register_once(db, outbox, car).await,
        outcome => outcome,
    }
}

async fn register_once(db: &DatabaseConnection, outbox: &Outbox, car: Car) -> Result<Car, Error> {
    let txn = db::begin_write(db).await?;
    if let Some(existing) = car::Entity::find_by_id(car.car_number.clone()).one(&txn).await? {
        let existing = Car::from(existing);
        return if existing == car {
            Ok(existing)
        } else {
            Err(Error::CarNumberTaken(car.car_number))
        };
    }
    car::Entity::insert(car::ActiveModel {
        car_number: Set(car.car_number.clone()),
        model: Set(car.model.clone()),
        daily_price_minor: Set(car.daily_price.amount_minor),
        currency_code: Set(car.daily_price.currency_code.clone()),
        registered_at_ms: Set(chrono::Utc::now().timestamp_millis()),
    })
    .exec_without_returning(&txn)
    .await?;
    let event = Event::new(
        SERVICE,
        &car.car_number,
        Payload::CarRegistered(CarRegistered {
            car_number: car.car_number.clone(),
            model: car.model.clone(),
            daily_price: Some(car.daily_price.clone().into()),
        }),
    );
    outbox.store(&txn, &event).await?;
    txn.commit().await?;
    outbox.wake();
    tracing::info!(car_number = %car.car_number, "car registered");
    Ok(car)
}

pub async fn find(db: &DatabaseConnection, car_number: &str) -> Result<Option<Car>, Error> {
    Ok(car::Entity::find_by_id(car_number.to_owned())
        .one(db)
        .await?
        .map(Car::from))
}

/// One page of cars by number; the flag says whether more follow.
pub async fn list(db: &DatabaseConnection, page: &PageRequest) -> Result<(Vec<Car>, bool), Error> {
    let mut query = car::Entity::find().order_by_asc(car::Column::CarNumber);
    if let Some(after) = &page.after {
        query = query.filter(car::Column::CarNumber.gt(after.as_str()));
    }
    let mut rows = query.limit(page.size + 1).all(db).await?;
    let more = rows.len() as u64 > page.size;
    rows.truncate(page.size as usize);
    Ok((rows.into_iter().map(Car::from).collect(), more))
}
