//! fleet: car management. A manager registers cars; every registration is published as a
//! `rentacar.fleet.car_registered` event so other contexts keep their own copy of the
//! catalog and never need fleet to be up. When a payment is approved fleet books the car's
//! dates (`car_booked`) or rejects the booking (`booking_rejected`); when it is refunded,
//! fleet frees them (`car_released`).
//!
//! - [`domain`]: what a car is and which values are valid.
//! - `bookings`: booking and freeing dates, never twice for one day.
//! - `events`: the consumer of payment events.
//! - `grpc`: the `FleetService` handlers, turning requests into domain values and back.
//! - `store`: the `cars` table and its queries.
//! - [`migration`]: the schema, the backbone's outbox and inbox included.

mod bookings;
pub mod domain;
mod error;
mod events;
mod grpc;
pub mod migration;
mod store;

pub use error::Error;

use async_nats::jetstream;
use rentacar_events::{Consumer, Outbox};
use rentacar_proto::fleet::fleet_service_server::FleetServiceServer;
use rentacar_runtime::{
    RunError, Server, ServiceConfig, Tasks,
    config::{ConfigError, Env},
    db,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The name fleet publishes events under and uses for its database file.
pub const SERVICE: &str = "fleet";

/// Settings of a fleet process.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
        })
    }
}

/// Runs fleet on `listener` until `shutdown` fires, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let db = db::wait_and_migrate::<migration::Migrator>(&config.service.database_url, &shutdown).await?;
    let nats = rentacar_events::connect(&config.service.nats_url, SERVICE)
        .await
        .map_err(|e| RunError::Setup("NATS client", e.into()))?;
    let js = jetstream::new(nats);

    let outbox = Outbox::new();
    let mut tasks = Tasks::new();
    let relay = outbox.relay(db.clone(), js.clone());
    tasks.spawn(|stop| relay.run(stop));
    let bookings = events::Bookings {
        outbox: outbox.clone(),
    };
    let consumer = Consumer::new("fleet-bookings", &events::SUBJECTS, bookings, db.clone(), js);
    tasks.spawn(|stop| consumer.run(stop));

    let result = Server::new(listener, config.service.drain_period)
        .watch_database(db.clone())
        .add_service(FleetServiceServer::new(grpc::FleetApi::new(db, outbox)))
        .serve(shutdown)
        .await;
    tasks.stop().await;
    Ok(result?)
}
