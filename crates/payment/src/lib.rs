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

use rentacar_events::Host;
use rentacar_proto::payment::payment_service_server::PaymentServiceServer;
use rentacar_runtime::{RunError, Server, ServiceConfig, server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The name payment connects, publishes events and names its database file under.
pub const SERVICE: &str = "payment";

/// Runs payment on `listener` until `shutdown` fires, then drains.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let host = Host::start::<migration::Migrator>(SERVICE, &config, listener, &shutdown).await?;
    let api = grpc::PaymentApi::new(host.db(), host.outbox());
    let server = Server::new(&config)
        .accept_service_calls()
        .add_service(PaymentServiceServer::new(api).max_decoding_message_size(server::MAX_REQUEST_BYTES));
    host.serve(server, shutdown).await
}
