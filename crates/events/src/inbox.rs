//! The inbox: which events a consumer has already applied.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, TryInsertResult,
};

pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub stream_sequence: i64,
        pub received_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records that `consumer` applies `event_id` now. Returns false if it already had: the
/// caller then skips the event. Runs inside the handler's transaction, so the record and
/// the state change commit or vanish together.
pub(crate) async fn record(
    txn: &impl ConnectionTrait,
    consumer: &str,
    event_id: &str,
    stream_sequence: u64,
) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id.to_owned()),
        stream_sequence: Set(stream_sequence as i64),
        received_at_ms: Set(crate::outbox::now_ms()),
    };
    let result = entity::Entity::insert(row)
        .on_conflict_do_nothing_on([entity::Column::Consumer, entity::Column::EventId])
        .exec_without_returning(txn)
        .await?;
    Ok(matches!(result, TryInsertResult::Inserted(n) if n > 0))
}

/// Deletes inbox rows received before `before_ms`; returns how many.
pub(crate) async fn prune(db: &impl ConnectionTrait, before_ms: i64) -> Result<u64, DbErr> {
    let deleted = entity::Entity::delete_many()
        .filter(entity::Column::ReceivedAtMs.lt(before_ms))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// Forgets every event `consumer` applied, so that a rebuild of its state from the stream
/// applies them again.
pub async fn forget_inbox(db: &impl ConnectionTrait, consumer: &str) -> Result<(), DbErr> {
    entity::Entity::delete_many()
        .filter(entity::Column::Consumer.eq(consumer))
        .exec(db)
        .await?;
    Ok(())
}
