//! fleet's schema.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261123_000101_create_cars;
mod m20261123_000102_create_bookings;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = rentacar_events::migration::migrations();
        migrations.push(Box::new(m20261123_000101_create_cars::Migration));
        migrations.push(Box::new(m20261123_000102_create_bookings::Migration));
        migrations
    }
}
