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

/// Events older than this leave the stream. Long enough that `mypage rebuild` restores every
/// reservation that can still hold a car's days (booked up to a year ahead, for up to a
/// year), and far longer than any consumer lags. The disk itself is bounded by the NATS
/// server's storage limit: when it is full, publishes fail and outboxes hold their events.
pub const MAX_AGE: Duration = Duration::from_secs(2 * 365 * 24 * 60 * 60);

/// How long a consumer remembers an event it applied: far beyond any redelivery (an
/// unacknowledged event comes back within minutes; a dead letter's replay goes only to the
/// consumer that failed on it) and the stream's duplicate window.
pub const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

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
        ..Default::default()
    };
    ensure_with(js, config, replicas).await
}

/// Creates the stream `config` describes with `replicas` copies, or raises an existing one
/// to that many and to its age limit.
pub(crate) async fn ensure_with(
    js: &jetstream::Context,
    config: stream::Config,
    replicas: usize,
) -> Result<stream::Stream, async_nats::Error> {
    let config = stream::Config {
        num_replicas: replicas,
        ..config
    };
    let stream = js.get_or_create_stream(config.clone()).await?;
    let current = stream.cached_info().config.clone();
    // An age limit is only ever raised here: a stream kept longer than `config` says (by
    // an operator, say) stays so. A stream without one, as earlier versions created it,
    // gets one: nothing grows without bound.
    let max_age = match (current.max_age, config.max_age) {
        (_, wanted) if wanted.is_zero() => current.max_age,
        (kept, wanted) if kept.is_zero() || kept < wanted => wanted,
        (kept, _) => kept,
    };
    if current.num_replicas < replicas || max_age != current.max_age {
        js.update_stream(stream::Config {
            num_replicas: current.num_replicas.max(replicas),
            max_age,
            ..current
        })
        .await?;
    }
    Ok(stream)
}
