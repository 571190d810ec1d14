//! Booking a car's dates for paid reservations, and freeing them when a payment is refunded.
//!
//! Each booked day is a row keyed by (car, day), so two reservations can never hold the same
//! day: the second reservation finds a day taken, gives back the days it got, and is rejected.
//! Every decision is also recorded per reservation, so a replayed or late event finds it
//! and changes nothing.

use rentacar_events::{Event, Outbox, Payload};
use rentacar_proto::events::{BookingRejected, CarBooked, CarReleased, PaymentApproved, PaymentCanceled};
use rentacar_types::{FieldViolations, RentalPeriod};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, OnConflict},
};

use crate::{SERVICE, store::car};

pub mod booking {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bookings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        pub car_number: String,
        pub pickup_date: String,
        pub return_date: String,
        pub status: String,
        pub reason: Option<String>,
        pub updated_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod booked_day {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "booked_days")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub car_number: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: String,
        pub reservation_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

const BOOKED: &str = "BOOKED";
const REJECTED: &str = "REJECTED";
const RELEASED: &str = "RELEASED";

/// Books the dates of a paid reservation, or rejects it with a reason.
pub async fn book(txn: &DatabaseTransaction, outbox: &Outbox, paid: &PaymentApproved) -> Result<(), DbErr> {
    if !record(txn, paid).await? {
        // Decided before (or canceled before the approval arrived): nothing to do.
        return Ok(());
    }
    let rejection = hold_days(txn, paid).await?;
    if let Some(reason) = &rejection {
        record_rejection(txn, paid, reason).await?;
    }
    let payload = match rejection {
        None => {
            tracing::info!(reservation_id = %paid.reservation_id, car_number = %paid.car_number, "dates booked");
            Payload::CarBooked(CarBooked {
                reservation_id: paid.reservation_id.clone(),
                car_number: paid.car_number.clone(),
                pickup_date: paid.pickup_date.clone(),
                return_date: paid.return_date.clone(),
            })
        }
        Some(reason) => {
            tracing::info!(reservation_id = %paid.reservation_id, car_number = %paid.car_number, %reason, "booking rejected");
            Payload::BookingRejected(BookingRejected {
                reservation_id: paid.reservation_id.clone(),
                car_number: paid.car_number.clone(),
                reason,
            })
        }
    };
    outbox
        .store(txn, &Event::new(SERVICE, &paid.reservation_id, payload))
        .await
}

/// Holds every day of the rental; when it cannot, returns why and holds none.
async fn hold_days(txn: &DatabaseTransaction, paid: &PaymentApproved) -> Result<Option<String>, DbErr> {
    let Some(period) = RentalPeriod::parse(&paid.pickup_date, &paid.return_date, &mut FieldViolations::new())
    else {
        return Ok(Some(format!(
            "invalid dates {}..{}",
            paid.pickup_date, paid.return_date
        )));
    };
    if car::Entity::find_by_id(paid.car_number.clone())
        .one(txn)
        .await?
        .is_none()
    {
        return Ok(Some(format!("car {} is not registered", paid.car_number)));
    }
    let days: Vec<_> = period
        .pickup()
        .iter_days()
        .take(period.days() as usize)
        .map(|day| booked_day::ActiveModel {
            car_number: Set(paid.car_number.clone()),
            day: Set(day.to_string()),
            reservation_id: Set(paid.reservation_id.clone()),
        })
        .collect();
    let wanted = days.len() as u64;
    // A day another reservation holds is skipped rather than failed on: one statement
    // books the free dates, and nothing needs undoing by a savepoint.
    let held = booked_day::Entity::insert_many(days)
        .on_conflict(
            OnConflict::columns([booked_day::Column::CarNumber, booked_day::Column::Day])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if held == wanted {
        return Ok(None);
    }
    // Some day is taken: the days just held go back.
    booked_day::Entity::delete_many()
        .filter(booked_day::Column::ReservationId.eq(paid.reservation_id.as_str()))
        .exec(txn)
        .await?;
    let holder = booked_day::Entity::find()
        .filter(booked_day::Column::CarNumber.eq(paid.car_number.as_str()))
        .filter(booked_day::Column::Day.gte(period.pickup().to_string()))
        .filter(booked_day::Column::Day.lt(period.return_date().to_string()))
        .one(txn)
        .await?;
    // The other reservation is logged, not told: the reason reaches this customer.
    if let Some(day) = &holder {
        tracing::info!(reservation_id = %paid.reservation_id, held_by = %day.reservation_id, day = %day.day, "day already held");
    }
    let first_taken = holder.map(|d| format!(" on {}", d.day)).unwrap_or_default();
    Ok(Some(format!(
        "car {} is already booked{first_taken}",
        paid.car_number
    )))
}

/// Records the decision about a paid reservation as BOOKED, before its days are held;
/// returns false when one was recorded before, which stands.
async fn record(txn: &DatabaseTransaction, paid: &PaymentApproved) -> Result<bool, DbErr> {
    let recorded = booking::Entity::insert(booking::ActiveModel {
        reservation_id: Set(paid.reservation_id.clone()),
        car_number: Set(paid.car_number.clone()),
        pickup_date: Set(paid.pickup_date.clone()),
        return_date: Set(paid.return_date.clone()),
        status: Set(BOOKED.to_owned()),
        reason: Set(None),
        updated_at_ms: Set(chrono::Utc::now().timestamp_millis()),
    })
    .on_conflict(
        OnConflict::column(booking::Column::ReservationId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(recorded == 1)
}

/// Turns the decision just recorded into a rejection, with its reason.
async fn record_rejection(
    txn: &DatabaseTransaction,
    paid: &PaymentApproved,
    reason: &str,
) -> Result<(), DbErr> {
    booking::Entity::update_many()
        .col_expr(booking::Column::Status, Expr::value(REJECTED))
        .col_expr(booking::Column::Reason, Expr::value(reason))
        .filter(booking::Column::ReservationId.eq(paid.reservation_id.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Frees a refunded reservation's days. A refund that arrives before the approval leaves a
/// RELEASED record, so the late approval books nothing.
pub async fn release(
    txn: &DatabaseTransaction,
    outbox: &Outbox,
    canceled: &PaymentCanceled,
) -> Result<(), DbErr> {
    let now = chrono::Utc::now().timestamp_millis();
    let Some(existing) = booking::Entity::find_by_id(canceled.reservation_id.clone())
        .one(txn)
        .await?
    else {
        booking::Entity::insert(booking::ActiveModel {
            reservation_id: Set(canceled.reservation_id.clone()),
            car_number: Set(String::new()),
            pickup_date: Set(String::new()),
            return_date: Set(String::new()),
            status: Set(RELEASED.to_owned()),
            reason: Set(Some("refunded before it was booked".to_owned())),
            updated_at_ms: Set(now),
        })
        .exec_without_returning(txn)
        .await?;
        return Ok(());
    };
    // Conditional on BOOKED and checked by the rows it changed: of two refunds applied at
    // once (by two replicas, under READ COMMITTED) only one frees the days and says so.
    let released = booking::Entity::update_many()
        .col_expr(booking::Column::Status, Expr::value(RELEASED))
        .col_expr(booking::Column::Reason, Expr::value(canceled.reason.clone()))
        .col_expr(booking::Column::UpdatedAtMs, Expr::value(now))
        .filter(booking::Column::ReservationId.eq(canceled.reservation_id.as_str()))
        .filter(booking::Column::Status.eq(BOOKED))
        .exec(txn)
        .await?;
    if released.rows_affected == 0 {
        return Ok(());
    }
    booked_day::Entity::delete_many()
        .filter(booked_day::Column::ReservationId.eq(canceled.reservation_id.as_str()))
        .exec(txn)
        .await?;
    let payload = Payload::CarReleased(CarReleased {
        reservation_id: existing.reservation_id.clone(),
        car_number: existing.car_number.clone(),
    });
    outbox
        .store(txn, &Event::new(SERVICE, &existing.reservation_id, payload))
        .await?;
    tracing::info!(reservation_id = %existing.reservation_id, car_number = %existing.car_number, "dates released");
    Ok(())
}
