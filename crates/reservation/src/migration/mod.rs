//! reservation's schema.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261123_000301_create_catalog_cars;
mod m20261123_000302_create_reservations;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = rentacar_events::migration::migrations();
        migrations.push(Box::new(m20261123_000301_create_catalog_cars::Migration));
        migrations.push(Box::new(m20261123_000302_create_reservations::Migration));
        migrations
    }
}
