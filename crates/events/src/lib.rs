//! The event backbone: protobuf events over NATS JetStream, with a transactional outbox on
//! the publishing side and an idempotent inbox on the consuming side.
//!
//! - [`Event`]: an envelope ready to store and publish, and the subject it travels on.
//! - [`Outbox`]: stores an event in the same database transaction as the state change that
//!   caused it; [`Relay`] publishes stored events with `Nats-Msg-Id` = event id, waits for
//!   the stream's ack and marks them sent, so a crash anywhere loses nothing and a re-send
//!   is dropped by the stream's duplicate window.
//! - [`consumer`]: durable pull consumers with explicit ack. Behind the [`Inbox`] a
//!   handler's state change and the event id it consumed commit together, so a redelivery
//!   is acked and skipped; a store without SQL transactions implements [`Apply`] itself.
//! - [`dead_letter`]: events a consumer keeps failing on, kept and replayable.
//! - [`stream`]: the one JetStream stream, created idempotently at start.
//! - [`migration`]: the `outbox` and `inbox` tables, added to each service's migrator.
//! - [`nats_server`]: starts a local `nats-server -js` (for `rentacar up` and tests).
//! - [`Host`]: a service's store (usually its [`Sql`] database with the outbox and relay),
//!   JetStream and consumers in one place.

pub mod consumer;
pub mod dead_letter;
mod envelope;
mod host;
mod inbox;
mod metrics;
pub mod migration;
pub mod nats_server;
pub mod outbox;
pub mod stream;
mod trace;

pub use consumer::{Apply, Consumer, Delivery, Handler, HandlerError, Inbox, Received};
pub use envelope::Event;
pub use host::{Host, Sql};
pub use inbox::forget_inbox;
pub use outbox::{Outbox, Relay};
pub use rentacar_proto::events::event_envelope::Payload;

use std::time::Duration;

/// Connects to NATS in the background: a service starts, serves and stores events while the
/// server is unreachable, and the client keeps reconnecting.
pub async fn connect(url: &str, client_name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        // Reconnect quickly after an outage; the default backs off to several seconds.
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .connect(url)
        .await
}
