//! The `payments` table: one row per reservation, changed together with its outbox events.

use rentacar_events::{Event, Outbox, Payload};
use rentacar_proto::{
    common::RefundCause,
    events::{PaymentApproved, PaymentCanceled},
};
use rentacar_runtime::db;
use rentacar_types::Money;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::{Expr, OnConflict},
};

use crate::{
    Error, SERVICE,
    domain::{Charge, Payment, PaymentStatus, Rental},
};

pub mod payment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        #[sea_orm(unique)]
        pub payment_id: String,
        pub customer_id: String,
        pub amount_minor: i64,
        pub currency_code: String,
        pub payment_method: String,
        pub status: String,
        pub decline_reason: Option<String>,
        pub refund_reason: Option<String>,
        pub car_number: String,
        pub pickup_date: String,
        pub return_date: String,
        pub created_at_ms: i64,
        pub updated_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl TryFrom<payment::Model> for Payment {
    type Error = sea_orm::DbErr;

    fn try_from(row: payment::Model) -> Result<Self, Self::Error> {
        let status = PaymentStatus::parse(&row.status)
            .ok_or_else(|| sea_orm::DbErr::Type(format!("unknown payment status {:?}", row.status)))?;
        Ok(Self {
            payment_id: row.payment_id,
            reservation_id: row.reservation_id,
            customer_id: row.customer_id,
            amount: Money {
                currency_code: row.currency_code,
                amount_minor: row.amount_minor,
            },
            status,
            decline_reason: row.decline_reason,
            rental: Rental {
                car_number: row.car_number,
                pickup_date: row.pickup_date,
                return_date: row.return_date,
            },
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Charges once per reservation. A repeated call returns the stored outcome: the same
/// approved (or refunded) payment, or the same decline.
/// A span, as the transaction is the call's main work.
#[tracing::instrument(
    target = "otel::tracing",
    level = "trace",
    name = "payments transaction",
    skip_all
)]
pub async fn pay(db: &DatabaseConnection, outbox: &Outbox, charge: Charge) -> Result<Payment, Error> {
    let txn = db::begin_write(db).await?;
    // Inserted first, read only when the reservation has a payment already: a first call,
    // the common one, writes without a read. A concurrent first call's row makes this
    // insert do nothing once that call commits, and the read then finds its row.
    let row = new_payment(&charge);
    let inserted = payment::Entity::insert(row.clone().into_active_model())
        .on_conflict(
            OnConflict::column(payment::Column::ReservationId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let payment = if inserted == 1 {
        let payment = Payment::try_from(row)?;
        if payment.status == PaymentStatus::Approved {
            outbox.store(&txn, &approved_event(&payment)).await?;
        }
        txn.commit().await?;
        outbox.wake();
        tracing::info!(reservation_id = %payment.reservation_id, status = payment.status.as_str(), "payment charged");
        payment
    } else {
        let row = payment::Entity::find_by_id(charge.reservation_id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::Database(DbErr::RecordNotFound(charge.reservation_id.clone())))?;
        let existing = Payment::try_from(row)?;
        if existing.status == PaymentStatus::Voided {
            return Err(Error::Voided(charge.reservation_id));
        }
        if !existing.is_same_charge(&charge) {
            return Err(Error::DifferentCharge(charge.reservation_id));
        }
        existing
    };
    match (payment.status, &payment.decline_reason) {
        (PaymentStatus::Declined, reason) => Err(Error::Declined {
            reservation_id: payment.reservation_id,
            reason: reason.clone().unwrap_or_default(),
        }),
        // Charging again what was refunded would be a new charge, not a retry.
        (PaymentStatus::Refunded, _) => Err(Error::AlreadyRefunded(payment.reservation_id)),
        _ => Ok(payment),
    }
}

/// The payment a first call of `charge` makes: approved, or declined with the reason.
fn new_payment(charge: &Charge) -> payment::Model {
    let decline_reason = charge.method.charge();
    let status = if decline_reason.is_some() {
        PaymentStatus::Declined
    } else {
        PaymentStatus::Approved
    };
    let now = now_ms();
    payment::Model {
        reservation_id: charge.reservation_id.clone(),
        payment_id: format!("pay_{}", uuid::Uuid::new_v4().simple()),
        customer_id: charge.customer_id.clone(),
        amount_minor: charge.amount.amount_minor,
        currency_code: charge.amount.currency_code.clone(),
        payment_method: charge.method.token().to_owned(),
        status: status.as_str().to_owned(),
        decline_reason: decline_reason.map(str::to_owned),
        refund_reason: None,
        car_number: charge.rental.car_number.clone(),
        pickup_date: charge.rental.pickup_date.clone(),
        return_date: charge.rental.return_date.clone(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// Runs `attempt` again if it lost an insert to a concurrent call (the row's key was taken
/// meanwhile): the second attempt finds that row and goes on from it.
async fn once_more_after_a_clash<T, Fut>(attempt: impl Fn() -> Fut) -> Result<T, Error>
where
    Fut: Future<Output = Result<T, Error>>,
{
    match attempt().await {
        Err(Error::Database(err)) if db::is_unique_violation(&err) => attempt().await,
        outcome => outcome,
    }
}

/// Refunds an approved payment, once: of concurrent refunds one changes it and stores the
/// event, the others find it refunded and return it unchanged. With cause ABANDONED
/// nothing is refunded: a reservation without a payment is voided, so a charge arriving
/// later is refused, and an existing payment is returned as it is.
pub async fn refund(
    db: &DatabaseConnection,
    outbox: &Outbox,
    reservation_id: &str,
    reason: &str,
    cause: RefundCause,
) -> Result<Payment, Error> {
    // A charge may insert the row while a void tries to: the void then finds the charge.
    once_more_after_a_clash(|| refund_once(db, outbox, reservation_id, reason, cause)).await
}

async fn refund_once(
    db: &DatabaseConnection,
    outbox: &Outbox,
    reservation_id: &str,
    reason: &str,
    cause: RefundCause,
) -> Result<Payment, Error> {
    let abandoned = cause == RefundCause::Abandoned;
    let txn = db::begin_write(db).await?;
    let Some(row) = payment::Entity::find_by_id(reservation_id.to_owned())
        .one(&txn)
        .await?
    else {
        if !abandoned {
            return Err(Error::NotFound(reservation_id.to_owned()));
        }
        let voided = void_row(reservation_id, reason);
        payment::Entity::insert(voided.clone().into_active_model())
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        tracing::info!(
            reservation_id,
            "reservation abandoned before any charge; payment voided"
        );
        return Ok(Payment::try_from(voided)?);
    };
    let mut payment = Payment::try_from(row)?;
    match payment.status {
        PaymentStatus::Refunded | PaymentStatus::Voided => return Ok(payment),
        // Whatever was decided stands: the caller keeps a reservation that was charged
        // after all, and one declined owes nothing.
        _ if abandoned => return Ok(payment),
        PaymentStatus::Declined => return Err(Error::NothingToRefund(reservation_id.to_owned())),
        PaymentStatus::Approved => {}
    }
    // Conditional on the state read: under READ COMMITTED a concurrent refund may have
    // committed since, and then this one changes nothing.
    let refunded = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Refunded.as_str()),
        )
        .col_expr(payment::Column::RefundReason, Expr::value(reason))
        .col_expr(payment::Column::UpdatedAtMs, Expr::value(now_ms()))
        .filter(payment::Column::ReservationId.eq(reservation_id))
        .filter(payment::Column::Status.eq(PaymentStatus::Approved.as_str()))
        .exec(&txn)
        .await?;
    payment.status = PaymentStatus::Refunded;
    if refunded.rows_affected == 0 {
        return Ok(payment);
    }
    let event = Event::new(
        SERVICE,
        &payment.reservation_id,
        Payload::PaymentCanceled(PaymentCanceled {
            payment_id: payment.payment_id.clone(),
            reservation_id: payment.reservation_id.clone(),
            amount: Some(payment.amount.clone().into()),
            reason: reason.to_owned(),
            cause: cause.into(),
        }),
    );
    outbox.store(&txn, &event).await?;
    txn.commit().await?;
    outbox.wake();
    tracing::info!(reservation_id, cause = cause.as_str_name(), "payment refunded");
    Ok(payment)
}

/// The row that marks a reservation as abandoned before it was charged.
fn void_row(reservation_id: &str, reason: &str) -> payment::Model {
    let now = now_ms();
    payment::Model {
        reservation_id: reservation_id.to_owned(),
        payment_id: format!("void_{}", uuid::Uuid::new_v4().simple()),
        customer_id: String::new(),
        amount_minor: 0,
        currency_code: String::new(),
        payment_method: String::new(),
        status: PaymentStatus::Voided.as_str().to_owned(),
        decline_reason: None,
        refund_reason: Some(reason.to_owned()),
        car_number: String::new(),
        pickup_date: String::new(),
        return_date: String::new(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

pub async fn find(db: &DatabaseConnection, reservation_id: &str) -> Result<Option<Payment>, Error> {
    let row = payment::Entity::find_by_id(reservation_id.to_owned())
        .one(db)
        .await?;
    Ok(row.map(Payment::try_from).transpose()?)
}

fn approved_event(payment: &Payment) -> Event {
    Event::new(
        SERVICE,
        &payment.reservation_id,
        Payload::PaymentApproved(PaymentApproved {
            payment_id: payment.payment_id.clone(),
            reservation_id: payment.reservation_id.clone(),
            customer_id: payment.customer_id.clone(),
            amount: Some(payment.amount.clone().into()),
            car_number: payment.rental.car_number.clone(),
            pickup_date: payment.rental.pickup_date.clone(),
            return_date: payment.rental.return_date.clone(),
        }),
    )
}
