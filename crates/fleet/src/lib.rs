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

use rentacar_events::Host;
use rentacar_proto::fleet::fleet_service_server::FleetServiceServer;
use rentacar_runtime::{RunError, Server, ServiceConfig, server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The name fleet connects, publishes events and names its database file under.
pub const SERVICE: &str = "fleet";

/// Runs fleet on `listener` until `shutdown` fires, then drains.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let mut host = Host::start::<migration::Migrator>(SERVICE, &config, listener, &shutdown).await?;
    let bookings = events::Bookings {
        outbox: host.outbox(),
    };
    host.consume("fleet-bookings", &events::SUBJECTS, bookings);
    let api = grpc::FleetApi::new(host.db(), host.outbox());
    let server = Server::new(&config)
        .add_service(FleetServiceServer::new(api).max_decoding_message_size(server::MAX_REQUEST_BYTES));
    host.serve(server, shutdown).await
}
