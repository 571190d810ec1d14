use sea_orm_migration::{prelude::*, schema::*};

/// The payment method a reservation is charged with, so that a call reusing its request id
/// with another method is told apart from a retry.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Reservations::Table)
                    .add_column(string(Reservations::PaymentMethod).default(""))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    PaymentMethod,
}
