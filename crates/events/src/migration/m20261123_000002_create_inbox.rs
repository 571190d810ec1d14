use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Inbox::Table)
                    .if_not_exists()
                    .col(string(Inbox::Consumer))
                    .col(string(Inbox::EventId))
                    .col(big_integer(Inbox::StreamSequence))
                    .col(big_integer(Inbox::ReceivedAtMs))
                    .primary_key(Index::create().col(Inbox::Consumer).col(Inbox::EventId))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    Consumer,
    EventId,
    StreamSequence,
    ReceivedAtMs,
}
