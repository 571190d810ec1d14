//! The `reservations` table and the `catalog_cars` replica.

use rentacar_events::{Event, Outbox, Payload};
use rentacar_proto::events::{ReservationCanceled, ReservationPaid};
use rentacar_runtime::db;
use rentacar_types::{FieldViolations, Money, PageRequest, RentalPeriod};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, OnConflict},
};

use crate::{
    Error, SERVICE,
    domain::{Reservation, Status},
};

pub mod reservation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        pub request_id: String,
        pub customer_id: String,
        pub car_number: String,
        pub pickup_date: String,
        pub return_date: String,
        pub price_minor: i64,
        pub currency_code: String,
        pub status: String,
        pub payment_id: String,
        pub created_at_ms: i64,
        pub updated_at_ms: i64,
        pub rejection_reason: Option<String>,
        pub payment_method: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod catalog_car {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_cars")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub car_number: String,
        pub model: String,
        pub daily_price_minor: i64,
        pub currency_code: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TryFrom<reservation::Model> for Reservation {
    type Error = DbErr;

    fn try_from(row: reservation::Model) -> Result<Self, DbErr> {
        let corrupt = |what: &str| DbErr::Type(format!("reservation {}: bad {what}", row.reservation_id));
        let status = Status::parse(&row.status).ok_or_else(|| corrupt("status"))?;
        let period = RentalPeriod::parse(&row.pickup_date, &row.return_date, &mut FieldViolations::new())
            .ok_or_else(|| corrupt("dates"))?;
        Ok(Self {
            reservation_id: row.reservation_id,
            request_id: row.request_id,
            customer_id: row.customer_id,
            car_number: row.car_number,
            period,
            price: Money {
                currency_code: row.currency_code,
                amount_minor: row.price_minor,
            },
            status,
            payment_id: row.payment_id,
            rejection_reason: row.rejection_reason,
            created_at_ms: row.created_at_ms,
            payment_method: row.payment_method,
        })
    }
}

/// The daily price of a car from the catalog replica.
pub async fn daily_price(db: &DatabaseConnection, car_number: &str) -> Result<Option<Money>, DbErr> {
    let car = catalog_car::Entity::find_by_id(car_number.to_owned())
        .one(db)
        .await?;
    Ok(car.map(|c| Money {
        currency_code: c.currency_code,
        amount_minor: c.daily_price_minor,
    }))
}

/// Adds or updates a car in the catalog replica.
pub async fn upsert_catalog_car(txn: &impl ConnectionTrait, car: catalog_car::Model) -> Result<(), DbErr> {
    catalog_car::Entity::insert(car.into_active_model())
        .on_conflict(
            OnConflict::column(catalog_car::Column::CarNumber)
                .update_columns([
                    catalog_car::Column::Model,
                    catalog_car::Column::DailyPriceMinor,
                    catalog_car::Column::CurrencyCode,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// A reservation as clients see it: one still waiting for its payment is not there yet.
pub async fn find(db: &impl ConnectionTrait, reservation_id: &str) -> Result<Option<Reservation>, Error> {
    Ok(find_any(db, reservation_id)
        .await?
        .filter(|r| r.status != Status::PendingPayment))
}

/// A reservation in any state, pending payment included.
pub async fn find_any(db: &impl ConnectionTrait, reservation_id: &str) -> Result<Option<Reservation>, Error> {
    let row = reservation::Entity::find_by_id(reservation_id.to_owned())
        .one(db)
        .await?;
    Ok(row.map(Reservation::try_from).transpose()?)
}

/// Records a reservation about to be paid; returns false when a concurrent call with the
/// same request id recorded it first.
#[tracing::instrument(
    target = "otel::tracing",
    level = "trace",
    name = "reservations insert",
    skip_all
)]
pub async fn insert_pending(db: &DatabaseConnection, reservation: &Reservation) -> Result<bool, Error> {
    let now = now_ms();
    let row = reservation::Model {
        reservation_id: reservation.reservation_id.clone(),
        request_id: reservation.request_id.clone(),
        customer_id: reservation.customer_id.clone(),
        car_number: reservation.car_number.clone(),
        pickup_date: reservation.period.pickup().to_string(),
        return_date: reservation.period.return_date().to_string(),
        price_minor: reservation.price.amount_minor,
        currency_code: reservation.price.currency_code.clone(),
        status: Status::PendingPayment.as_str().to_owned(),
        payment_id: String::new(),
        created_at_ms: reservation.created_at_ms,
        updated_at_ms: now,
        rejection_reason: None,
        payment_method: reservation.payment_method.clone(),
    };
    match reservation::Entity::insert(row.into_active_model())
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if db::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Moves a pending reservation to PAID with its `reservation.paid` event, and returns it as
/// it now is (a concurrent call may have done it already).
#[tracing::instrument(
    target = "otel::tracing",
    level = "trace",
    name = "reservations mark paid",
    skip_all
)]
pub async fn mark_paid(
    db: &DatabaseConnection,
    outbox: &Outbox,
    reservation_id: &str,
    payment_id: &str,
) -> Result<Reservation, Error> {
    let txn = db::begin_write(db).await?;
    // The row comes back with the update: one statement where it is still pending.
    let updated = reservation::Entity::update_many()
        .col_expr(reservation::Column::Status, Expr::value(Status::Paid.as_str()))
        .col_expr(reservation::Column::PaymentId, Expr::value(payment_id))
        .col_expr(reservation::Column::UpdatedAtMs, Expr::value(now_ms()))
        .filter(reservation::Column::ReservationId.eq(reservation_id))
        .filter(reservation::Column::Status.eq(Status::PendingPayment.as_str()))
        .exec_with_returning(&txn)
        .await?
        .pop();
    let (reservation, paid_here) = match updated {
        Some(row) => (Reservation::try_from(row)?, true),
        None => {
            let found = find_any(&txn, reservation_id)
                .await?
                .ok_or_else(|| Error::ReservationNotFound(reservation_id.to_owned()))?;
            (found, false)
        }
    };
    if paid_here {
        let event = Payload::ReservationPaid(ReservationPaid {
            reservation_id: reservation.reservation_id.clone(),
            customer_id: reservation.customer_id.clone(),
            car_number: reservation.car_number.clone(),
            pickup_date: reservation.period.pickup().to_string(),
            return_date: reservation.period.return_date().to_string(),
            price: Some(reservation.price.clone().into()),
            payment_id: payment_id.to_owned(),
        });
        outbox
            .store(&txn, &Event::new(SERVICE, reservation_id, event))
            .await?;
        txn.commit().await?;
        outbox.wake();
        tracing::info!(reservation_id, car_number = %reservation.car_number, "reservation paid");
    }
    Ok(reservation)
}

/// Marks a pending reservation as being paid now, so the settler leaves it alone for a
/// while; a reservation no longer pending is left as it is.
pub async fn touch_pending(db: &DatabaseConnection, reservation_id: &str) -> Result<(), Error> {
    reservation::Entity::update_many()
        .col_expr(reservation::Column::UpdatedAtMs, Expr::value(now_ms()))
        .filter(reservation::Column::ReservationId.eq(reservation_id))
        .filter(reservation::Column::Status.eq(Status::PendingPayment.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Claims a stale pending reservation for settling: false when it was touched since
/// `before_ms` (a retry is paying it) or is no longer pending.
pub async fn claim_stale(
    db: &DatabaseConnection,
    reservation_id: &str,
    before_ms: i64,
) -> Result<bool, Error> {
    let claimed = reservation::Entity::update_many()
        .col_expr(reservation::Column::UpdatedAtMs, Expr::value(now_ms()))
        .filter(reservation::Column::ReservationId.eq(reservation_id))
        .filter(reservation::Column::Status.eq(Status::PendingPayment.as_str()))
        .filter(reservation::Column::UpdatedAtMs.lt(before_ms))
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Removes a pending reservation whose payment was declined or never happened.
pub async fn forget_pending(db: &DatabaseConnection, reservation_id: &str) -> Result<(), Error> {
    reservation::Entity::delete_many()
        .filter(reservation::Column::ReservationId.eq(reservation_id))
        .filter(reservation::Column::Status.eq(Status::PendingPayment.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Pending reservations untouched since `before_ms`: their payment call ended long ago.
pub async fn stale_pending(db: &DatabaseConnection, before_ms: i64) -> Result<Vec<Reservation>, Error> {
    let rows = reservation::Entity::find()
        .filter(reservation::Column::Status.eq(Status::PendingPayment.as_str()))
        .filter(reservation::Column::UpdatedAtMs.lt(before_ms))
        .limit(100)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(Reservation::try_from)
        .collect::<Result<_, _>>()?)
}

/// Moves a reservation to `to` if its current state allows it, storing the event `event`
/// makes of it with the change. Returns the reservation as it now is if it moved: a
/// concurrent change or a replayed event finds it in a state it cannot leave that way, and
/// nothing happens.
pub async fn transition(
    txn: &impl ConnectionTrait,
    outbox: &Outbox,
    reservation_id: &str,
    to: Status,
    rejection_reason: Option<&str>,
    event: impl FnOnce(&Reservation) -> Payload,
) -> Result<Option<Reservation>, DbErr> {
    let from: Vec<&str> = Status::sources_of(to).into_iter().map(Status::as_str).collect();
    let mut update = reservation::Entity::update_many()
        .col_expr(reservation::Column::Status, Expr::value(to.as_str()))
        .col_expr(reservation::Column::UpdatedAtMs, Expr::value(now_ms()));
    if let Some(reason) = rejection_reason {
        update = update.col_expr(reservation::Column::RejectionReason, Expr::value(reason));
    }
    // The row comes back with the update, so the event needs no read of its own.
    let Some(row) = update
        .filter(reservation::Column::ReservationId.eq(reservation_id))
        .filter(reservation::Column::Status.is_in(from))
        .exec_with_returning(txn)
        .await?
        .pop()
    else {
        return Ok(None);
    };
    let moved = Reservation::try_from(row)?;
    outbox
        .store(txn, &Event::new(SERVICE, reservation_id, event(&moved)))
        .await?;
    tracing::info!(reservation_id, status = to.as_str(), "reservation changed");
    Ok(Some(moved))
}

/// Cancels a reservation with its `reservation.canceled` event and returns it as it now is,
/// and whether this call canceled it.
#[tracing::instrument(
    target = "otel::tracing",
    level = "trace",
    name = "reservations cancel",
    skip_all
)]
pub async fn cancel(
    db: &DatabaseConnection,
    outbox: &Outbox,
    reservation: &Reservation,
) -> Result<(Reservation, bool), Error> {
    let txn = db::begin_write(db).await?;
    let canceled = transition(
        &txn,
        outbox,
        &reservation.reservation_id,
        Status::Canceled,
        None,
        |r| {
            Payload::ReservationCanceled(ReservationCanceled {
                reservation_id: r.reservation_id.clone(),
                customer_id: r.customer_id.clone(),
                car_number: r.car_number.clone(),
            })
        },
    )
    .await?;
    txn.commit().await?;
    outbox.wake();
    match canceled {
        Some(now) => Ok((now, true)),
        None => {
            let now = find(db, &reservation.reservation_id)
                .await?
                .ok_or_else(|| Error::ReservationNotFound(reservation.reservation_id.clone()))?;
            Ok((now, false))
        }
    }
}

/// One page of a customer's reservations, newest first, and the cursor of the next page.
pub async fn list_for_customer(
    db: &DatabaseConnection,
    customer_id: &str,
    page: &PageRequest,
) -> Result<(Vec<Reservation>, Option<String>), Error> {
    let mut query = reservation::Entity::find()
        .filter(reservation::Column::CustomerId.eq(customer_id))
        .filter(reservation::Column::Status.ne(Status::PendingPayment.as_str()))
        .order_by_desc(reservation::Column::CreatedAtMs)
        .order_by_desc(reservation::Column::ReservationId);
    if let Some(after) = &page.after {
        let (created, id) = parse_cursor(after).ok_or_else(|| {
            let mut violations = FieldViolations::new();
            violations.add("page_token", "is not a token returned by a previous page");
            Error::InvalidArgument(violations)
        })?;
        query = query.filter(
            Condition::any()
                .add(reservation::Column::CreatedAtMs.lt(created))
                .add(
                    Condition::all()
                        .add(reservation::Column::CreatedAtMs.eq(created))
                        .add(reservation::Column::ReservationId.lt(id)),
                ),
        );
    }
    let mut rows = query.limit(page.size + 1).all(db).await?;
    let more = rows.len() as u64 > page.size;
    rows.truncate(page.size as usize);
    let next = if more {
        rows.last()
            .map(|r| format!("{}|{}", r.created_at_ms, r.reservation_id))
    } else {
        None
    };
    let reservations = rows
        .into_iter()
        .map(Reservation::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((reservations, next))
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (created, id) = cursor.split_once('|')?;
    Some((created.parse().ok()?, id.to_owned()))
}
