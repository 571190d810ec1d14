//! The backbone's tables. Each service's migrator lists these before its own migrations.

use sea_orm_migration::MigrationTrait;

mod m20261123_000001_create_outbox;
mod m20261123_000002_create_inbox;

/// The outbox and inbox migrations, in order.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20261123_000001_create_outbox::Migration),
        Box::new(m20261123_000002_create_inbox::Migration),
    ]
}
