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

use rentacar_events::Host;
use rentacar_proto::mypage::my_page_service_server::MyPageServiceServer;
use rentacar_runtime::{RunError, Server, ServiceConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The name mypage connects, publishes events and names its database file under.
pub const SERVICE: &str = "mypage";

/// Runs mypage on `listener` until `shutdown` fires, then drains.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let mut host = Host::start::<migration::Migrator>(SERVICE, &config, listener, &shutdown).await?;
    host.consume("mypage-projection", &events::SUBJECTS, events::Projection);
    let api = grpc::MyPageApi::new(host.db());
    let server = Server::new(config.drain_period).add_service(MyPageServiceServer::new(api));
    host.serve(server, shutdown).await
}
