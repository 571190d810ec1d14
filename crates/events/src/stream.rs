//! The JetStream stream that holds every rentacar event.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// One stream for every context's events; consumers filter by subject.
pub const STREAM_NAME: &str = "RENTACAR";

/// Subjects captured by [`STREAM_NAME`].
pub const SUBJECTS: &str = "rentacar.>";

/// Re-sends of the same event id within this window are dropped by the server. The relay
/// re-sends only after a failed or unacknowledged publish, which is much sooner than this.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Creates the stream if it does not exist yet, kept by `replicas` nodes of a NATS cluster
/// (1 on a single server); safe to call from every replica at start. A stream created with
/// fewer copies is raised to `replicas`.
pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<stream::Stream, async_nats::Error> {
    let config = stream::Config {
        name: STREAM_NAME.to_owned(),
        subjects: vec![SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    ensure_with(js, config, replicas).await
}

/// Creates the stream `config` describes with `replicas` copies, or raises an existing one
/// to that many.
pub(crate) async fn ensure_with(
    js: &jetstream::Context,
    config: stream::Config,
    replicas: usize,
) -> Result<stream::Stream, async_nats::Error> {
    let config = stream::Config {
        num_replicas: replicas,
        ..config
    };
    let stream = js.get_or_create_stream(config).await?;
    let current = stream.cached_info().config.clone();
    if current.num_replicas < replicas {
        js.update_stream(stream::Config {
            num_replicas: replicas,
            ..current
        })
        .await?;
    }
    Ok(stream)
}
