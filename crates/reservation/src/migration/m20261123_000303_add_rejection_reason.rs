use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Reservations::Table)
                    .add_column(string_null(Reservations::RejectionReason))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    RejectionReason,
}
