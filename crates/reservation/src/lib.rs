//! reservation: the core context. A customer reserves a car for a date range and pays in
//! the same call; cancelling refunds the payment.
//!
//! Prices come from reservation's own replica of the car catalog, fed by fleet's
//! `car_registered` events, so reservations go on while fleet is down. Payment is called
//! synchronously over gRPC with a deadline: no reservation is stored as PAID unless payment
//! approved it.
//!
//! - [`domain`]: reservations, their states and the legal transitions.
//! - `grpc`: the `ReservationService` handlers.
//! - `checkout`: reserve-and-pay, safe against stopping halfway, and settling what a crash
//!   or a lost answer left pending.
//! - `payment`: the client of the payment service and how its failures read here.
//! - `store`: the `reservations` and `catalog_cars` tables.
//! - `events`: what reservation consumes: the car catalog, and fleet's booking decisions
//!   that confirm a reservation or reject and refund it (the saga).
//! - `watch`: telling `WatchReservation` streams about changes.
//! - [`migration`]: the schema.

mod checkout;
pub mod domain;
mod error;
mod events;
mod grpc;
mod metrics;
pub mod migration;
mod payment;
mod store;
mod watch;

pub use error::Error;

use std::time::Duration;

use rentacar_events::Host;
use rentacar_proto::reservation::reservation_service_server::ReservationServiceServer;
use rentacar_runtime::{
    RunError, Server, ServiceConfig,
    config::{ConfigError, Env},
    server,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use payment::longest_charge;

pub const SERVICE: &str = "reservation";

/// Settings of a reservation process.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// `RENTACAR_PAYMENT_URL`: where the payment service listens.
    pub payment_url: String,
    /// `RENTACAR_PAYMENT_TIMEOUT_MS`: the deadline of each call to payment.
    pub payment_timeout: Duration,
    /// `RENTACAR_PAYMENT_BREAKER_OPEN_MS`: how long calls to a failing payment service are
    /// paused before one probe call is let through.
    pub payment_breaker_open: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env, SERVICE)?,
            payment_url: env.url_or(
                "RENTACAR_PAYMENT_URL",
                "http://127.0.0.1:50052",
                &["http", "https"],
            )?,
            payment_timeout: env.millis_or("RENTACAR_PAYMENT_TIMEOUT_MS", Duration::from_secs(3))?,
            payment_breaker_open: env
                .millis_or("RENTACAR_PAYMENT_BREAKER_OPEN_MS", Duration::from_secs(5))?,
        })
    }
}

/// Runs reservation on `listener` until `shutdown` fires, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let payments = payment::PaymentClient::new(
        &config.payment_url,
        config.payment_timeout,
        config.payment_breaker_open,
    )
    .map_err(|e| RunError::Setup("payment client", e.into()))?;
    let mut host = Host::start::<migration::Migrator>(SERVICE, &config.service, listener, &shutdown).await?;
    host.consume(
        "reservation-car-catalog",
        &["rentacar.fleet.car_registered"],
        events::CatalogHandler,
    );
    let changes = watch::Changes::default();
    let nats = host.nats();
    host.spawn(|stop| changes.clone().follow(nats, stop));
    let saga_metrics = metrics::SagaMetrics::new();
    let saga = events::SagaHandler {
        db: host.db(),
        outbox: host.outbox(),
        payments: payments.clone(),
        changes: changes.clone(),
        changed: Default::default(),
        metrics: saga_metrics.clone(),
    };
    host.consume("reservation-saga", &events::SAGA_SUBJECTS, saga);
    let checkout =
        checkout::Checkout::new(host.db(), host.outbox(), payments.clone(), config.payment_timeout);
    host.spawn(|stop| checkout.clone().settle_pending(stop));

    let api = grpc::ReservationApi::new(
        host.db(),
        host.outbox(),
        payments,
        checkout,
        changes,
        saga_metrics,
        shutdown.clone(),
    );
    let server = Server::new(&config.service)
        .add_service(ReservationServiceServer::new(api).max_decoding_message_size(server::MAX_REQUEST_BYTES));
    host.serve(server, shutdown).await
}
