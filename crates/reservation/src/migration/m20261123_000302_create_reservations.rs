use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .if_not_exists()
                    .col(string(Reservations::ReservationId).primary_key())
                    .col(string(Reservations::RequestId))
                    .col(string(Reservations::CustomerId))
                    .col(string(Reservations::CarNumber))
                    .col(string(Reservations::PickupDate))
                    .col(string(Reservations::ReturnDate))
                    .col(big_integer(Reservations::PriceMinor))
                    .col(string(Reservations::CurrencyCode))
                    .col(string(Reservations::Status))
                    .col(string(Reservations::PaymentId))
                    .col(big_integer(Reservations::CreatedAtMs))
                    .col(big_integer(Reservations::UpdatedAtMs))
                    .to_owned(),
            )
            .await?;
        // "My reservations", newest first.
        manager
            .create_index(
                Index::create()
                    .name("reservations_by_customer")
                    .table(Reservations::Table)
                    .col(Reservations::CustomerId)
                    .col(Reservations::CreatedAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    ReservationId,
    RequestId,
    CustomerId,
    CarNumber,
    PickupDate,
    ReturnDate,
    PriceMinor,
    CurrencyCode,
    Status,
    PaymentId,
    CreatedAtMs,
    UpdatedAtMs,
}
