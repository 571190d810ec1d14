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

/// Events older than this leave the stream: every consumer has long applied them.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The most the stream keeps. When it is full, new events are refused rather than old ones
/// dropped, so an event nobody consumed yet is never lost: outboxes hold theirs until room
/// is made.
pub const MAX_BYTES: i64 = 8 * 1024 * 1024 * 1024;

/// How long a consumer remembers an event it applied: longer than the stream keeps it, so
/// no redelivery can bring back an event that was forgotten.
pub const INBOX_RETENTION: Duration = Duration::from_secs(MAX_AGE.as_secs() + 24 * 60 * 60);

/// Creates the stream if it does not exist yet, kept by `replicas` nodes of a NATS cluster
/// (1 on a single server); safe to call from every replica at start. A stream created with
/// fewer copies, or without limits, is brought up to this configuration.
pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<stream::Stream, async_nats::Error> {
    let config = stream::Config {
        name: STREAM_NAME.to_owned(),
        subjects: vec![SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: MAX_AGE,
        max_bytes: MAX_BYTES,
        discard: stream::DiscardPolicy::New,
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
    // Limits are compared only where the config sets them (the server reports unset ones
    // its own way).
    let limits = (config.max_age, config.max_bytes, config.discard);
    let limited = config.max_age != Duration::ZERO;
    let stream = js.get_or_create_stream(config).await?;
    let current = stream.cached_info().config.clone();
    let limits_differ = limited && (current.max_age, current.max_bytes, current.discard) != limits;
    if current.num_replicas < replicas || limits_differ {
        let (max_age, max_bytes, discard) = if limited {
            limits
        } else {
            (current.max_age, current.max_bytes, current.discard)
        };
        js.update_stream(stream::Config {
            num_replicas: current.num_replicas.max(replicas),
            max_age,
            max_bytes,
            discard,
            ..current
        })
        .await?;
    }
    Ok(stream)
}
