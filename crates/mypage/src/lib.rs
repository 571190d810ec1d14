//! mypage: the customer's read model (CQRS). It is built only from events, never by calling
//! another service, and answers "my reservations" and "is this car free" from its own tables.
//! It is eventually consistent: each row carries the stream sequence of the last event it
//! reflects.
//!
//! - `events`: the projection, from events to rows.
//! - `grpc`: the `MyPageService` handlers.
//! - `store`: the `my_reservations` and `cars` views and their queries.
//! - [`migration`]: the schema.

mod error;
mod events;
mod grpc;
pub mod migration;
mod store;

pub use error::Error;

use async_nats::jetstream;
use rentacar_events::Consumer;
use rentacar_proto::mypage::my_page_service_server::MyPageServiceServer;
use rentacar_runtime::{
    RunError, Server, ServiceConfig, Tasks,
    config::{ConfigError, Env},
    db,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "mypage";

/// Settings of a mypage process.
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

/// Runs mypage on `listener` until `shutdown` fires, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let db = db::wait_and_migrate::<migration::Migrator>(&config.service.database_url, &shutdown).await?;
    let nats = rentacar_events::connect(&config.service.nats_url, SERVICE)
        .await
        .map_err(|e| RunError::Setup("NATS client", e.into()))?;
    let js = jetstream::new(nats);

    let mut tasks = Tasks::new();
    let projection = Consumer::new(
        "mypage-projection",
        &events::SUBJECTS,
        events::Projection,
        db.clone(),
        js,
    );
    tasks.spawn(|stop| projection.run(stop));

    let result = Server::new(listener, config.service.drain_period)
        .watch_database(db.clone())
        .add_service(MyPageServiceServer::new(grpc::MyPageApi::new(db)))
        .serve(shutdown)
        .await;
    tasks.stop().await;
    Ok(result?)
}
