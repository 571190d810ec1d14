//! The backbone's tables. Each service's migrator lists these before its own migrations.

use sea_orm_migration::MigrationTrait;

mod m20261123_000001_create_outbox;
mod m20261123_000002_create_inbox;
mod m20261201_000003_outbox_trace_context;
mod m20261201_000004_retention;

/// The outbox and inbox migrations, in order. A new one goes at the end: databases that
/// ran the service's own migrations already take it as pending.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20261123_000001_create_outbox::Migration),
        Box::new(m20261123_000002_create_inbox::Migration),
        Box::new(m20261201_000003_outbox_trace_context::Migration),
        Box::new(m20261201_000004_retention::Migration),
    ]
}
