use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per reservation fleet has decided on: booked, rejected or released.
        manager
            .create_table(
                Table::create()
                    .table(Bookings::Table)
                    .if_not_exists()
                    .col(string(Bookings::ReservationId).primary_key())
                    .col(string(Bookings::CarNumber))
                    .col(string(Bookings::PickupDate))
                    .col(string(Bookings::ReturnDate))
                    .col(string(Bookings::Status))
                    .col(string_null(Bookings::Reason))
                    .col(big_integer(Bookings::UpdatedAtMs))
                    .to_owned(),
            )
            .await?;
        // One row per booked day of a car. The primary key is what makes a double booking
        // impossible, whatever the number of fleet replicas deciding at the same moment.
        manager
            .create_table(
                Table::create()
                    .table(BookedDays::Table)
                    .if_not_exists()
                    .col(string(BookedDays::CarNumber))
                    .col(string(BookedDays::Day))
                    .col(string(BookedDays::ReservationId))
                    .primary_key(Index::create().col(BookedDays::CarNumber).col(BookedDays::Day))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("booked_days_by_reservation")
                    .table(BookedDays::Table)
                    .col(BookedDays::ReservationId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    ReservationId,
    CarNumber,
    PickupDate,
    ReturnDate,
    Status,
    Reason,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum BookedDays {
    Table,
    CarNumber,
    Day,
    ReservationId,
}
