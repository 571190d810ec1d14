use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MyReservations::Table)
                    .if_not_exists()
                    .col(string(MyReservations::ReservationId).primary_key())
                    .col(string(MyReservations::CustomerId))
                    .col(string(MyReservations::CarNumber))
                    .col(string(MyReservations::PickupDate))
                    .col(string(MyReservations::ReturnDate))
                    .col(big_integer(MyReservations::PriceMinor))
                    .col(string(MyReservations::CurrencyCode))
                    .col(string(MyReservations::Status))
                    .col(big_integer(MyReservations::PaidSequence))
                    .col(big_integer(MyReservations::LastEventSequence))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("my_reservations_by_customer")
                    .table(MyReservations::Table)
                    .col(MyReservations::CustomerId)
                    .col(MyReservations::PaidSequence)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("my_reservations_by_car")
                    .table(MyReservations::Table)
                    .col(MyReservations::CarNumber)
                    .col(MyReservations::PickupDate)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ViewCars::Table)
                    .if_not_exists()
                    .col(string(ViewCars::CarNumber).primary_key())
                    .col(string(ViewCars::Model))
                    .col(big_integer(ViewCars::DailyPriceMinor))
                    .col(string(ViewCars::CurrencyCode))
                    .col(big_integer(ViewCars::LastEventSequence))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum MyReservations {
    Table,
    ReservationId,
    CustomerId,
    CarNumber,
    PickupDate,
    ReturnDate,
    PriceMinor,
    CurrencyCode,
    Status,
    PaidSequence,
    LastEventSequence,
}

#[derive(DeriveIden)]
enum ViewCars {
    Table,
    CarNumber,
    Model,
    DailyPriceMinor,
    CurrencyCode,
    LastEventSequence,
}
