use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Cars::Table)
                    .if_not_exists()
                    .col(string(Cars::CarNumber).primary_key())
                    .col(string(Cars::Model))
                    .col(big_integer(Cars::DailyPriceMinor))
                    .col(string(Cars::CurrencyCode))
                    .col(big_integer(Cars::RegisteredAtMs))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Cars {
    Table,
    CarNumber,
    Model,
    DailyPriceMinor,
    CurrencyCode,
    RegisteredAtMs,
}
