//! mypage: the customer's read model (CQRS). It is built only from events, never by calling
//! another service, and answers "my reservations" and "is this car free" from its own
//! store. It is eventually consistent: each row carries the stream sequence of the last
//! event it reflects.
//!
//! - [`domain`]: the rows and the rules that move them, whatever the store.
//! - [`views`]: the one interface the gRPC handlers read through.
//! - `sql` and [`dynamodb`]: the two providers, chosen by [`Config`]; both apply events
//!   idempotently (an inbox row, or conditional writes).
//! - `grpc`: the `MyPageService` handlers.
//! - [`rebuild`]: the read model made again from the whole stream.
//! - [`migration`]: the SQL schema.

mod config;
pub mod domain;
pub mod dynamodb;
mod error;
mod grpc;
pub mod migration;
pub mod rebuild;
mod sql;
pub mod views;

pub use config::{Config, DEFAULT_TABLE, DynamodbConfig, StoreConfig};
pub use error::Error;

use std::sync::Arc;

use rentacar_events::Host;
use rentacar_proto::mypage::my_page_service_server::MyPageServiceServer;
use rentacar_runtime::{RunError, Server, server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{domain::SUBJECTS, dynamodb::DynamodbViews, sql::SqlViews};

/// The name mypage connects, publishes events and names its database file under.
pub const SERVICE: &str = "mypage";

/// The durable consumer that keeps the read model.
pub const PROJECTION: &str = "mypage-projection";

/// Runs mypage on `listener` until `shutdown` fires, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let server = Server::new(&config.service);
    match &config.store {
        StoreConfig::Sql => {
            let mut host =
                Host::start::<migration::Migrator>(SERVICE, &config.service, listener, &shutdown).await?;
            host.consume(PROJECTION, &SUBJECTS, sql::SqlProjection);
            let api = grpc::MyPageApi::new(Arc::new(SqlViews::new(host.db())));
            host.serve(
                server.add_service(
                    MyPageServiceServer::new(api).max_decoding_message_size(server::MAX_REQUEST_BYTES),
                ),
                shutdown,
            )
            .await
        }
        StoreConfig::Dynamodb(dynamodb) => {
            let table = DynamodbViews::wait_until_usable(dynamodb, &shutdown);
            let table = async {
                table
                    .await
                    .map_err(|e| RunError::Setup("DynamoDB table", e.into()))
            };
            let mut host = Host::start_with(SERVICE, &config.service, listener, table).await?;
            let views = host.state().clone();
            host.consume_with(PROJECTION, &SUBJECTS, views.clone());
            let api = grpc::MyPageApi::new(Arc::new(views.clone()));
            let server = server
                .add_service(
                    MyPageServiceServer::new(api).max_decoding_message_size(server::MAX_REQUEST_BYTES),
                )
                .ready_when(views.readiness());
            host.serve_with(server, shutdown).await
        }
    }
}
