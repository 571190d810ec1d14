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

/// Every dead letter, oldest first; `consumer` narrows it to one consumer's. Only reads:
/// no dead-letter stream yet means no dead letters.
pub async fn list(
    js: &jetstream::Context,
    consumer: Option<&str>,
) -> Result<Vec<DeadLetter>, async_nats::Error> {
    let mut letters = Vec::new();
    let stream = match js.get_stream(STREAM_NAME).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Ok(letters);
        }
        Err(err) => return Err(err.into()),
    };
    let state = stream.get_info().await?.state;
    if state.messages == 0 {
        return Ok(letters);
    }
    for sequence in state.first_sequence..=state.last_sequence {
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
            letters.push(letter);
        }
    }
    Ok(letters)
}

/// Sends dead letters back to their original subjects, then removes them. Consumers that
/// already applied an event skip it by its id, so only the one that failed applies it.
/// Returns how many were replayed.
pub async fn replay(js: &jetstream::Context, consumer: Option<&str>) -> Result<usize, async_nats::Error> {
    let letters = list(js, consumer).await?;
    if letters.is_empty() {
        return Ok(0);
    }
    let stream = js.get_stream(STREAM_NAME).await?;
    for letter in &letters {
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
        js.publish_with_headers(letter.original_subject.clone(), headers, letter.payload.clone())
            .await?
            .await?;
        stream.delete_message(letter.sequence).await?;
        tracing::info!(consumer = %letter.consumer, subject = %letter.original_subject, "dead letter replayed");
    }
    Ok(letters.len())
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
