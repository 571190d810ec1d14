//! The views: `my_reservations` (one row per reservation) and `view_cars` (the catalog).

use rentacar_proto::events::{CarRegistered, ReservationPaid};
use rentacar_types::{Money, PageRequest, RentalPeriod};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
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
        /// Sequence of the `reservation.paid` event: the order reservations are listed in.
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

/// Reservation states that hold a car's days.
const HOLDING: [&str; 2] = ["PAID", "CONFIRMED"];

pub async fn upsert_car(txn: &impl ConnectionTrait, car: &CarRegistered, seq: i64) -> Result<(), DbErr> {
    let price: Money = car.daily_price.clone().unwrap_or_default().into();
    let row = view_car::Model {
        car_number: car.car_number.clone(),
        model: car.model.clone(),
        daily_price_minor: price.amount_minor,
        currency_code: price.currency_code,
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
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Records a paid reservation. A status event that overtook it (after a redelivery) left
/// a row with its status already; that status is kept and only the details are filled in.
pub async fn insert_reservation(
    txn: &impl ConnectionTrait,
    paid: &ReservationPaid,
    seq: i64,
) -> Result<(), DbErr> {
    let price: Money = paid.price.clone().unwrap_or_default().into();
    let row = my_reservation::Model {
        reservation_id: paid.reservation_id.clone(),
        customer_id: paid.customer_id.clone(),
        car_number: paid.car_number.clone(),
        pickup_date: paid.pickup_date.clone(),
        return_date: paid.return_date.clone(),
        price_minor: price.amount_minor,
        currency_code: price.currency_code,
        status: "PAID".to_owned(),
        paid_sequence: seq,
        last_event_sequence: seq,
    };
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

/// A reservation's move to `status`, as an event tells it.
pub struct StatusChange<'a> {
    pub reservation_id: &'a str,
    pub customer_id: &'a str,
    pub car_number: &'a str,
    pub status: &'static str,
}

/// The states a reservation may reach `status` from: the reservation's own state machine,
/// so a replayed or late event never moves a row backwards.
fn sources_of(status: &str) -> &'static [&'static str] {
    match status {
        "CONFIRMED" | "REJECTED" => &["PAID"],
        "CANCELED" => &["PAID", "CONFIRMED"],
        _ => &[],
    }
}

/// Moves a reservation's status forward. If its paid event has not been applied yet, a row
/// holding just the status is made, and the paid event fills it in.
pub async fn set_status(txn: &impl ConnectionTrait, change: StatusChange<'_>, seq: i64) -> Result<(), DbErr> {
    let moved = my_reservation::Entity::update_many()
        .col_expr(my_reservation::Column::Status, Expr::value(change.status))
        .col_expr(my_reservation::Column::LastEventSequence, Expr::value(seq))
        .filter(my_reservation::Column::ReservationId.eq(change.reservation_id))
        .filter(my_reservation::Column::Status.is_in(sources_of(change.status).iter().copied()))
        .exec(txn)
        .await?;
    if moved.rows_affected > 0 {
        return Ok(());
    }
    let placeholder = my_reservation::Model {
        reservation_id: change.reservation_id.to_owned(),
        customer_id: change.customer_id.to_owned(),
        car_number: change.car_number.to_owned(),
        pickup_date: String::new(),
        return_date: String::new(),
        price_minor: 0,
        currency_code: String::new(),
        status: change.status.to_owned(),
        paid_sequence: seq,
        last_event_sequence: seq,
    };
    my_reservation::Entity::insert(placeholder.into_active_model())
        .on_conflict_do_nothing_on([my_reservation::Column::ReservationId])
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// One page of a customer's reservations, newest first, and the cursor of the next.
pub async fn list_for_customer(
    db: &DatabaseConnection,
    customer_id: &str,
    page: &PageRequest,
    after: Option<i64>,
) -> Result<(Vec<my_reservation::Model>, Option<i64>), DbErr> {
    let mut query = my_reservation::Entity::find()
        .filter(my_reservation::Column::CustomerId.eq(customer_id))
        .order_by_desc(my_reservation::Column::PaidSequence);
    if let Some(after) = after {
        query = query.filter(my_reservation::Column::PaidSequence.lt(after));
    }
    let mut rows = query.limit(page.size + 1).all(db).await?;
    let more = rows.len() as u64 > page.size;
    rows.truncate(page.size as usize);
    let next = if more {
        rows.last().map(|r| r.paid_sequence)
    } else {
        None
    };
    Ok((rows, next))
}

pub async fn car(db: &DatabaseConnection, car_number: &str) -> Result<Option<view_car::Model>, DbErr> {
    view_car::Entity::find_by_id(car_number.to_owned()).one(db).await
}

/// Reservations of `car_number` that hold a day of `period`.
pub async fn holding(
    db: &DatabaseConnection,
    car_number: Option<&str>,
    period: &RentalPeriod,
) -> Result<Vec<my_reservation::Model>, DbErr> {
    // ISO dates compare correctly as text.
    let mut query = my_reservation::Entity::find()
        .filter(my_reservation::Column::Status.is_in(HOLDING))
        .filter(my_reservation::Column::PickupDate.lt(period.return_date().to_string()))
        .filter(my_reservation::Column::ReturnDate.gt(period.pickup().to_string()));
    if let Some(car_number) = car_number {
        query = query.filter(my_reservation::Column::CarNumber.eq(car_number));
    }
    query.all(db).await
}

/// The highest event sequence reflected for a car: its registration or any reservation of it.
pub async fn car_sequence(db: &DatabaseConnection, car: &view_car::Model) -> Result<i64, DbErr> {
    let latest = my_reservation::Entity::find()
        .filter(my_reservation::Column::CarNumber.eq(car.car_number.as_str()))
        .order_by_desc(my_reservation::Column::LastEventSequence)
        .one(db)
        .await?;
    Ok(latest.map_or(car.last_event_sequence, |r| {
        r.last_event_sequence.max(car.last_event_sequence)
    }))
}

/// One page of cars free for `period`, by number.
pub async fn available_cars(
    db: &DatabaseConnection,
    period: &RentalPeriod,
    page: &PageRequest,
) -> Result<(Vec<view_car::Model>, bool), DbErr> {
    let busy: Vec<String> = holding(db, None, period)
        .await?
        .into_iter()
        .map(|r| r.car_number)
        .collect();
    let mut query = view_car::Entity::find().order_by_asc(view_car::Column::CarNumber);
    if !busy.is_empty() {
        query = query.filter(view_car::Column::CarNumber.is_not_in(busy));
    }
    if let Some(after) = &page.after {
        query = query.filter(view_car::Column::CarNumber.gt(after.as_str()));
    }
    let mut rows = query.limit(page.size + 1).all(db).await?;
    let more = rows.len() as u64 > page.size;
    rows.truncate(page.size as usize);
    Ok((rows, more))
}
