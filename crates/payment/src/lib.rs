//! payment: charges and refunds the payment of a reservation.
//!
//! Every call is keyed by reservation id, so a retry (by a client, by the reservation
//! service, or by the mesh's sidecar) returns the first outcome and never charges or
//! refunds twice. Approvals and refunds are published as `rentacar.payment.approved` and
//! `rentacar.payment.canceled` through the outbox.
//!
//! - [`domain`]: payment methods (with Stripe-style test tokens) and payment states.
//! - `grpc`: the `PaymentService` handlers.
//! - `store`: the `payments` table and the transactions that change it.
//! - [`migration`]: the schema.

pub mod domain;
mod error;
mod grpc;
pub mod migration;
mod store;

pub use error::Error;

use async_nats::jetstream;
use rentacar_events::Outbox;
use rentacar_proto::payment::payment_service_server::PaymentServiceServer;
use rentacar_runtime::{
    RunError, Server, ServiceConfig, Tasks,
    config::{ConfigError, Env},
    db,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "payment";

/// Settings of a payment process.
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

/// Runs payment on `listener` until `shutdown` fires, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let db = db::wait_and_migrate::<migration::Migrator>(&config.service.database_url, &shutdown).await?;
    let nats = rentacar_events::connect(&config.service.nats_url, SERVICE)
        .await
        .map_err(|e| RunError::Setup("NATS client", e.into()))?;
    let js = jetstream::new(nats);

    let outbox = Outbox::new();
    let mut tasks = Tasks::new();
    let relay = outbox.relay(db.clone(), js);
    tasks.spawn(|stop| relay.run(stop));

    let result = Server::new(listener, config.service.drain_period)
        .watch_database(db.clone())
        .add_service(PaymentServiceServer::new(grpc::PaymentApi::new(db, outbox)))
        .serve(shutdown)
        .await;
    tasks.stop().await;
    Ok(result?)
}
