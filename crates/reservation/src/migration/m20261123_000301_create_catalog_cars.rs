use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CatalogCars::Table)
                    .if_not_exists()
                    .col(string(CatalogCars::CarNumber).primary_key())
                    .col(string(CatalogCars::Model))
                    .col(big_integer(CatalogCars::DailyPriceMinor))
                    .col(string(CatalogCars::CurrencyCode))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum CatalogCars {
    Table,
    CarNumber,
    Model,
    DailyPriceMinor,
    CurrencyCode,
}
