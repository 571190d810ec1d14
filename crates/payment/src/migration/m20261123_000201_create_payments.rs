use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .if_not_exists()
                    .col(string(Payments::ReservationId).primary_key())
                    .col(string_uniq(Payments::PaymentId))
                    .col(string(Payments::CustomerId))
                    .col(big_integer(Payments::AmountMinor))
                    .col(string(Payments::CurrencyCode))
                    .col(string(Payments::PaymentMethod))
                    .col(string(Payments::Status))
                    .col(string_null(Payments::DeclineReason))
                    .col(string_null(Payments::RefundReason))
                    .col(string(Payments::CarNumber))
                    .col(string(Payments::PickupDate))
                    .col(string(Payments::ReturnDate))
                    .col(big_integer(Payments::CreatedAtMs))
                    .col(big_integer(Payments::UpdatedAtMs))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    ReservationId,
    PaymentId,
    CustomerId,
    AmountMinor,
    CurrencyCode,
    PaymentMethod,
    Status,
    DeclineReason,
    RefundReason,
    CarNumber,
    PickupDate,
    ReturnDate,
    CreatedAtMs,
    UpdatedAtMs,
}
