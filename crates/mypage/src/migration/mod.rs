//! mypage's schema.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261123_000401_create_views;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = rentacar_events::migration::migrations();
        migrations.push(Box::new(m20261123_000401_create_views::Migration));
        migrations
    }
}
