use sea_orm_migration::{prelude::*, schema::*};

/// An outbox row the stream refused for good is set aside with the refusal, so the rows
/// behind it go on; and old inbox rows are found by age, to be pruned.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        for column in [big_integer_null(Outbox::FailedAtMs), string_null(Outbox::Error)] {
            manager
                .alter_table(Table::alter().table(Outbox::Table).add_column(column).to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("inbox_received")
                    .table(Inbox::Table)
                    .col(Inbox::ReceivedAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    FailedAtMs,
    Error,
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    ReceivedAtMs,
}
