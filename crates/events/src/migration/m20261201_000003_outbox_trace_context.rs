use sea_orm_migration::{prelude::*, schema::*};

/// Each outbox row keeps the trace context of the change that stored it, so the event
/// continues that trace when it is published.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        for column in [Outbox::Traceparent, Outbox::Tracestate] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .add_column(string_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Traceparent,
    Tracestate,
}
