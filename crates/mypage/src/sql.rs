//! The `sql` provider (SQLite or PostgreSQL through sea-orm): tables `my_reservations` (one
//! row per reservation) and `view_cars` (the catalog). Events are applied behind the inbox,
//! in one transaction with the inbox row; every status change is a conditional update.

use async_trait::async_trait;
use rentacar_events::{Delivery, Handler, HandlerError};
use rentacar_proto::events::{CarRegistered, EventEnvelope, ReservationPaid};
use rentacar_types::{Money, RentalPeriod};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, OnConflict},
};

use crate::{
    Error,
    domain::{CarAvailability, CarView, HOLDING, ReservationView, StatusChange, ViewEvent, sources_of},
    views::{Page, ReadModel},
};

pub mod my_reservation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "my_reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        pub customer_id: String,
        pub car_number: String,
        pub pickup_date: String,
        pub return_date: String,
        pub price_minor: i64,
        pub currency_code: String,
        pub status: String,
        pub paid_sequence: i64,
        pub last_event_sequence: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod view_car {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "view_cars")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub car_number: String,
        pub model: String,
        pub daily_price_minor: i64,
        pub currency_code: String,
        pub last_event_sequence: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl From<my_reservation::Model> for ReservationView {
    fn from(row: my_reservation::Model) -> Self {
        Self {
            reservation_id: row.reservation_id,
            customer_id: row.customer_id,
            car_number: row.car_number,
            pickup_date: row.pickup_date,
            return_date: row.return_date,
            price: Money {
                currency_code: row.currency_code,
                amount_minor: row.price_minor,
            },
            status: row.status,
            paid_sequence: row.paid_sequence,
            last_event_sequence: row.last_event_sequence,
        }
    }
}

impl From<ReservationView> for my_reservation::Model {
    fn from(view: ReservationView) -> Self {
        Self {
            reservation_id: view.reservation_id,
            customer_id: view.customer_id,
            car_number: view.car_number,
            pickup_date: view.pickup_date,
            return_date: view.return_date,
            price_minor: view.price.amount_minor,
            currency_code: view.price.currency_code,
            status: view.status,
            paid_sequence: view.paid_sequence,
            last_event_sequence: view.last_event_sequence,
        }
    }
}

impl From<view_car::Model> for CarView {
    fn from(row: view_car::Model) -> Self {
        Self {
            car_number: row.car_number,
            model: row.model,
            daily_price: Money {
                currency_code: row.currency_code,
                amount_minor: row.daily_price_minor,
            },
            last_event_sequence: row.last_event_sequence,
        }
    }
}

/// The views in mypage's SQL database.
#[derive(Clone)]
pub struct SqlViews {
    db: DatabaseConnection,
}

impl SqlViews {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Empties the views and the projection's inbox, for a rebuild from the stream.
    pub async fn clear(&self, consumer: &str) -> Result<(), DbErr> {
        my_reservation::Entity::delete_many().exec(&self.db).await?;
        view_car::Entity::delete_many().exec(&self.db).await?;
        rentacar_events::forget_inbox(&self.db, consumer).await
    }
}

/// Applies events to the SQL views inside the consumer's inbox transaction.
pub struct SqlProjection;

impl Handler for SqlProjection {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let seq = delivery.stream_sequence as i64;
        match ViewEvent::from_envelope(event) {
            Some(ViewEvent::CarRegistered(car)) => upsert_car(txn, &car, seq).await?,
            Some(ViewEvent::Paid(paid)) => insert_reservation(txn, &paid, seq).await?,
            Some(ViewEvent::Status(change)) => set_status(txn, &change, seq).await?,
            None => {}
        }
        Ok(())
    }
}

async fn upsert_car(txn: &impl ConnectionTrait, car: &CarRegistered, seq: i64) -> Result<(), DbErr> {
    let car = crate::domain::car_view(car, seq);
    let row = view_car::Model {
        car_number: car.car_number,
        model: car.model,
        daily_price_minor: car.daily_price.amount_minor,
        currency_code: car.daily_price.currency_code,
        last_event_sequence: seq,
    };
    view_car::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::column(view_car::Column::CarNumber)
                .update_columns([
                    view_car::Column::Model,
                    view_car::Column::DailyPriceMinor,
                    view_car::Column::CurrencyCode,
                    view_car::Column::LastEventSequence,
                ])
                // A replayed or older registration leaves a newer row alone.
                .action_and_where(view_car::Column::LastEventSequence.lt(seq))
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Records a paid reservation. A status event that overtook it left a row with its status
/// already; that status is kept and only the details are filled in.
async fn insert_reservation(
    txn: &impl ConnectionTrait,
    paid: &ReservationPaid,
    seq: i64,
) -> Result<(), DbErr> {
    let row: my_reservation::Model = crate::domain::paid_row(paid, seq).into();
    use my_reservation::Column;
    my_reservation::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::column(Column::ReservationId)
                .update_columns([
                    Column::CustomerId,
                    Column::CarNumber,
                    Column::PickupDate,
                    Column::ReturnDate,
                    Column::PriceMinor,
                    Column::CurrencyCode,
                    Column::PaidSequence,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Moves a reservation's status forward. If its paid event has not been applied yet, a row
/// holding just the status is made, and the paid event fills it in.
async fn set_status(txn: &impl ConnectionTrait, change: &StatusChange, seq: i64) -> Result<(), DbErr> {
    let moved = my_reservation::Entity::update_many()
        .col_expr(my_reservation::Column::Status, Expr::value(change.status))
        .col_expr(my_reservation::Column::LastEventSequence, Expr::value(seq))
        .filter(my_reservation::Column::ReservationId.eq(change.reservation_id.as_str()))
        .filter(my_reservation::Column::Status.is_in(sources_of(change.status).iter().copied()))
        .exec(txn)
        .await?;
    if moved.rows_affected > 0 {
        return Ok(());
    }
    let placeholder: my_reservation::Model = crate::domain::status_row(change, seq).into();
    my_reservation::Entity::insert(placeholder.into_active_model())
        .on_conflict_do_nothing_on([my_reservation::Column::ReservationId])
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Reservations of `car_number` that hold a day of `period`.
async fn holding(
    db: &DatabaseConnection,
    car_number: &str,
    period: &RentalPeriod,
) -> Result<Vec<my_reservation::Model>, DbErr> {
    // ISO dates compare correctly as text.
    my_reservation::Entity::find()
        .filter(my_reservation::Column::CarNumber.eq(car_number))
        .filter(my_reservation::Column::Status.is_in(HOLDING))
        .filter(my_reservation::Column::PickupDate.lt(period.return_date().to_string()))
        .filter(my_reservation::Column::ReturnDate.gt(period.pickup().to_string()))
        .all(db)
        .await
}

#[async_trait]
impl ReadModel for SqlViews {
    async fn my_reservations(
        &self,
        customer_id: &str,
        size: u64,
        after: Option<i64>,
    ) -> Result<Page<ReservationView, i64>, Error> {
        let mut query = my_reservation::Entity::find()
            .filter(my_reservation::Column::CustomerId.eq(customer_id))
            .order_by_desc(my_reservation::Column::PaidSequence);
        if let Some(after) = after {
            query = query.filter(my_reservation::Column::PaidSequence.lt(after));
        }
        let rows = query.limit(size + 1).all(&self.db).await?;
        Ok(Page::from_one_extra(
            rows.into_iter().map(ReservationView::from).collect(),
            size,
            |r| r.paid_sequence,
        ))
    }

    async fn car_availability(
        &self,
        car_number: &str,
        period: &RentalPeriod,
    ) -> Result<Option<CarAvailability>, Error> {
        let Some(car) = view_car::Entity::find_by_id(car_number.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let holding = holding(&self.db, car_number, period).await?;
        let latest = my_reservation::Entity::find()
            .filter(my_reservation::Column::CarNumber.eq(car_number))
            .order_by_desc(my_reservation::Column::LastEventSequence)
            .one(&self.db)
            .await?;
        let last_event_sequence = latest.map_or(car.last_event_sequence, |r| {
            r.last_event_sequence.max(car.last_event_sequence)
        });
        Ok(Some(CarAvailability {
            conflicting_reservation_ids: holding.into_iter().map(|r| r.reservation_id).collect(),
            last_event_sequence,
        }))
    }

    async fn available_cars(
        &self,
        period: &RentalPeriod,
        size: u64,
        after: Option<&str>,
    ) -> Result<Page<CarView, String>, Error> {
        // Cars with a holding reservation overlapping the period, as a subquery, so the
        // statement stays the same size however many cars are busy.
        let busy = my_reservation::Entity::find()
            .select_only()
            .column(my_reservation::Column::CarNumber)
            .filter(my_reservation::Column::Status.is_in(HOLDING))
            .filter(my_reservation::Column::PickupDate.lt(period.return_date().to_string()))
            .filter(my_reservation::Column::ReturnDate.gt(period.pickup().to_string()))
            .into_query();
        let mut query = view_car::Entity::find()
            .filter(view_car::Column::CarNumber.not_in_subquery(busy))
            .order_by_asc(view_car::Column::CarNumber);
        if let Some(after) = after {
            query = query.filter(view_car::Column::CarNumber.gt(after));
        }
        let rows = query.limit(size + 1).all(&self.db).await?;
        Ok(Page::from_one_extra(
            rows.into_iter().map(CarView::from).collect(),
            size,
            |c| c.car_number.clone(),
        ))
    }
}
