//! reservation's schema.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261123_000301_create_catalog_cars;
mod m20261123_000302_create_reservations;
mod m20261123_000303_add_rejection_reason;
mod m20261201_000304_add_payment_method;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = rentacar_events::migration::migrations();
        migrations.push(Box::new(m20261123_000301_create_catalog_cars::Migration));
        migrations.push(Box::new(m20261123_000302_create_reservations::Migration));
        migrations.push(Box::new(m20261123_000303_add_rejection_reason::Migration));
        migrations.push(Box::new(m20261201_000304_add_payment_method::Migration));
        migrations
    }
}
