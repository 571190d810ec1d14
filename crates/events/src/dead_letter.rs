//! Dead letters: events a consumer failed to apply [`DEAD_LETTER_AFTER`] times.
//!
//! JetStream has no dead-letter queue of its own. The consumer loop republishes such an
//! event to `deadletter.<consumer>` on a stream of its own, with the original headers plus
//! the original subject, the consumer, the error and the delivery count, and only then
//! terminates the original delivery. Nothing is dropped silently: the event stays visible
//! ([`list`]) until [`replay`] sends it back to its subject after the fault is fixed.

use async_nats::{HeaderMap, jetstream};

use crate::Delivery;

/// The stream that keeps dead letters.
pub const STREAM_NAME: &str = "RENTACAR_DEAD_LETTERS";
/// Dead letters of consumer `c` are published on `deadletter.c`.
pub const SUBJECT_PREFIX: &str = "deadletter.";

/// Deliveries that fail before an event is dead-lettered, unless a consumer says otherwise.
/// With the retry delays growing to 30 s, that is about six minutes of trying.
pub const DEAD_LETTER_AFTER: i64 = 20;

pub const HEADER_ORIGINAL_SUBJECT: &str = "Rentacar-Original-Subject";
pub const HEADER_CONSUMER: &str = "Rentacar-Consumer";
pub const HEADER_ERROR: &str = "Rentacar-Error";
pub const HEADER_DELIVERED: &str = "Rentacar-Delivered";
pub const HEADER_STREAM_SEQUENCE: &str = "Rentacar-Stream-Sequence";
/// The original `Nats-Msg-Id`; the dead letter needs one of its own (see [`send`]).
pub const HEADER_ORIGINAL_MSG_ID: &str = "Rentacar-Original-Msg-Id";
/// Set on a replayed dead letter: only this consumer applies it, the others skip it.
pub const HEADER_REPLAYED_FOR: &str = "Rentacar-Replayed-For";

/// Whether a message with `headers` is a dead letter replayed for a consumer other than
/// `consumer`, which then skips it: it applied the event long ago, possibly longer ago than
/// its inbox remembers.
pub fn replayed_for_another(headers: Option<&HeaderMap>, consumer: &str) -> bool {
    headers
        .and_then(|headers| headers.get(HEADER_REPLAYED_FOR))
        .is_some_and(|name| name.as_str() != consumer)
}
/// Set on the dead letter of an event the stream refused to take: its payload is not in the
/// letter but in the publishing service's `outbox` table, marked with the error.
pub const HEADER_KEPT_IN_OUTBOX: &str = "Rentacar-Kept-In-Outbox";

/// The consumer name under which a service's unpublishable events are listed.
pub fn outbox_consumer(service: &str) -> String {
    format!("outbox-{service}")
}

/// A dead letter as stored.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    pub consumer: String,
    pub original_subject: String,
    pub error: String,
    /// The original message's headers, ours included.
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
}

/// Creates the dead-letter stream if it does not exist yet, kept by as many nodes as the
/// event stream: a dead letter is the only copy of its event.
pub async fn ensure(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<jetstream::stream::Stream, async_nats::Error> {
    let config = jetstream::stream::Config {
        name: STREAM_NAME.to_owned(),
        subjects: vec![format!("{SUBJECT_PREFIX}>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    crate::stream::ensure_with(js, config, replicas).await
}

/// Stores `message` as a dead letter of `consumer` and waits for the stream's ack.
pub(crate) async fn send(
    js: &jetstream::Context,
    consumer: &str,
    message: &jetstream::Message,
    delivery: &Delivery,
    error: &str,
    replicas: usize,
) -> Result<(), async_nats::Error> {
    ensure(js, replicas).await?;
    let mut headers = message.headers.clone().unwrap_or_default();
    headers.insert(HEADER_ORIGINAL_SUBJECT, message.subject.as_str());
    headers.insert(HEADER_CONSUMER, consumer);
    headers.insert(HEADER_ERROR, one_line(error).as_str());
    headers.insert(HEADER_DELIVERED, delivery.delivered.to_string().as_str());
    headers.insert(
        HEADER_STREAM_SEQUENCE,
        delivery.stream_sequence.to_string().as_str(),
    );
    if let Some(original) = headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()) {
        headers.insert(HEADER_ORIGINAL_MSG_ID, original.as_str());
    }
    // Per consumer and delivery: two consumers failing on one event keep two letters, and
    // dead-lettering the same delivery twice (a crash before the Term) keeps one.
    headers.insert(
        "Nats-Msg-Id",
        format!("{consumer}-{}", delivery.stream_sequence).as_str(),
    );
    js.publish_with_headers(
        format!("{SUBJECT_PREFIX}{consumer}"),
        headers,
        message.payload.clone(),
    )
    .await?
    .await?;
    Ok(())
}

/// Records that the stream refused `row` of `service`'s outbox for good. The letter has the
/// event's subject, id and the error but no payload, since the payload is what was refused.
pub(crate) async fn send_unpublishable(
    js: &jetstream::Context,
    service: &str,
    row: &crate::outbox::entity::Model,
    error: &str,
    replicas: usize,
) -> Result<(), async_nats::Error> {
    ensure(js, replicas).await?;
    let consumer = outbox_consumer(service);
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_ORIGINAL_SUBJECT, row.subject.as_str());
    headers.insert(HEADER_CONSUMER, consumer.as_str());
    headers.insert(HEADER_ERROR, one_line(error).as_str());
    headers.insert(HEADER_ORIGINAL_MSG_ID, row.event_id.as_str());
    headers.insert(
        HEADER_KEPT_IN_OUTBOX,
        format!("{} bytes, outbox row {}", row.payload.len(), row.id).as_str(),
    );
    headers.insert("Nats-Msg-Id", format!("{consumer}-{}", row.event_id).as_str());
    js.publish_with_headers(
        format!("{SUBJECT_PREFIX}{consumer}"),
        headers,
        bytes::Bytes::new(),
    )
    .await?
    .await?;
    Ok(())
}

/// A page of dead letters, oldest first, and the sequence to continue after when there
/// are more.
#[derive(Debug, Default)]
pub struct Page {
    pub letters: Vec<DeadLetter>,
    pub next_after: Option<u64>,
}

/// Letters one page reads at most, matching `consumer` or not.
const MAX_SCANNED: u64 = 1_000;

/// Up to `limit` dead letters stored after sequence `after` (0 for the first page), oldest
/// first; `consumer` narrows it to one consumer's. Only reads: no dead-letter stream yet
/// means no dead letters.
pub async fn list(
    js: &jetstream::Context,
    consumer: Option<&str>,
    after: u64,
    limit: usize,
) -> Result<Page, async_nats::Error> {
    let mut page = Page::default();
    let stream = match js.get_stream(STREAM_NAME).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Ok(page);
        }
        Err(err) => return Err(err.into()),
    };
    let state = stream.get_info().await?.state;
    if state.messages == 0 {
        return Ok(page);
    }
    let first = state.first_sequence.max(after + 1);
    for sequence in first..=state.last_sequence {
        // A page ends when it is full, or when it has looked at enough letters of other
        // consumers; either way the next one continues after the last sequence read.
        if page.letters.len() == limit || sequence - first == MAX_SCANNED {
            page.next_after = Some(sequence - 1);
            break;
        }
        // Replayed letters are deleted and leave gaps.
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let letter = DeadLetter {
            sequence,
            consumer: header(HEADER_CONSUMER),
            original_subject: header(HEADER_ORIGINAL_SUBJECT),
            error: header(HEADER_ERROR),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        };
        if consumer.is_none_or(|c| c == letter.consumer) {
            page.letters.push(letter);
        }
    }
    Ok(page)
}

/// Letters replayed per page read.
const REPLAY_PAGE: usize = 100;

/// Sends dead letters back to their original subjects, then removes them. Only the consumer
/// that failed applies a replayed event; the others skip it.
/// Letters of events the stream refused to take have no payload to send and stay.
/// Returns how many were replayed.
pub async fn replay(js: &jetstream::Context, consumer: Option<&str>) -> Result<usize, async_nats::Error> {
    let mut replayed = 0;
    let mut after = 0;
    loop {
        let page = list(js, consumer, after, REPLAY_PAGE).await?;
        for letter in &page.letters {
            if letter.headers.get(HEADER_KEPT_IN_OUTBOX).is_some() {
                continue;
            }
            replay_one(js, letter).await?;
            replayed += 1;
        }
        match page.next_after {
            Some(next) => after = next,
            None => return Ok(replayed),
        }
    }
}

async fn replay_one(js: &jetstream::Context, letter: &DeadLetter) -> Result<(), async_nats::Error> {
    let mut headers = HeaderMap::new();
    for (name, values) in letter.headers.iter() {
        let name = name.to_string();
        if name.starts_with("Rentacar-") || name == "Nats-Msg-Id" {
            continue;
        }
        for value in values {
            headers.append(name.as_str(), value.as_str());
        }
    }
    // A new message id: the original one may still be inside the duplicate window.
    headers.insert(
        "Nats-Msg-Id",
        format!("replay-{}-{}", letter.consumer, letter.sequence).as_str(),
    );
    headers.insert(HEADER_REPLAYED_FOR, letter.consumer.as_str());
    js.publish_with_headers(letter.original_subject.clone(), headers, letter.payload.clone())
        .await?
        .await?;
    js.get_stream(STREAM_NAME)
        .await?
        .delete_message(letter.sequence)
        .await?;
    tracing::info!(consumer = %letter.consumer, subject = %letter.original_subject, "dead letter replayed");
    Ok(())
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
