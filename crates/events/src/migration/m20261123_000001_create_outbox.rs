use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Outbox::Id))
                    .col(string_uniq(Outbox::EventId))
                    .col(string(Outbox::Subject))
                    .col(binary(Outbox::Payload))
                    .col(big_integer(Outbox::CreatedAtMs))
                    .col(big_integer_null(Outbox::SentAtMs))
                    .to_owned(),
            )
            .await?;
        // The relay asks for unsent rows in id order.
        manager
            .create_index(
                Index::create()
                    .name("outbox_unsent")
                    .table(Outbox::Table)
                    .col(Outbox::SentAtMs)
                    .col(Outbox::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    EventId,
    Subject,
    Payload,
    CreatedAtMs,
    SentAtMs,
}
