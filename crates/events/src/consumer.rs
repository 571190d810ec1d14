//! Durable pull consumers with explicit ack and an idempotent inbox.
//!
//! A handler gets the decoded event and an open database transaction that already holds the
//! inbox row for it; its state change commits together with that row. Events that arrive
//! together are applied in one transaction (one commit for up to [`MAX_BATCH`]) and acked
//! after it; a batch that fails is applied again one event at a time. A redelivered event
//! finds the row and is acked without a second effect. A failing handler's event is nak'ed
//! with a growing delay and redelivered; after [`DEAD_LETTER_AFTER`] failures (about six
//! minutes: long enough to ride out a restart of a database or a service) it moves to
//! the dead-letter stream (see [`crate::dead_letter`]). A consumer that stops hands back the
//! events it had received and not applied, so that the next instance gets them at once.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{
        AckPolicy, DeliverPolicy, PullConsumer,
        pull::{self, MessagesError},
    },
    message::AckKind,
};
use futures::{FutureExt, Stream, StreamExt};
use opentelemetry::{KeyValue, metrics::Counter};
use prost::Message as _;
use rentacar_proto::events::EventEnvelope;
use rentacar_runtime::db;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    dead_letter::{self, DEAD_LETTER_AFTER},
    inbox, metrics, stream, trace,
};

/// How long the server waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// The most events applied in one transaction.
const MAX_BATCH: usize = 64;

/// Where an event sits in the stream, for handlers that record it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's sequence in the stream; read models keep it per row.
    pub stream_sequence: u64,
    /// How many times it has been delivered, counting this one.
    pub delivered: i64,
}

/// Why a handler could not apply an event. All are retried by redelivery.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("database error")]
    Database(#[from] DbErr),
    #[error("store error")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Failed(String),
}

/// Applies one kind of event to a service's state.
pub trait Handler: Send + Sync + 'static {
    /// Runs before the transaction opens (for a batch, for each of its events in turn), for
    /// idempotent calls to other services that must succeed before the state changes (a
    /// refund before a rejection). It may run again for an event that was already applied,
    /// so it must be safe to repeat.
    fn prepare(&self, _event: &EventEnvelope) -> impl Future<Output = Result<(), HandlerError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Applies `event` inside `txn`. Events the handler does not care about are ignored by
    /// returning `Ok(())`.
    fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &EventEnvelope,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Runs after the handler's transaction committed (for example to wake an outbox relay).
    fn after_commit(&self) {}
}

/// Applies an event exactly once in effect, however often it is delivered. [`Inbox`] does
/// it for a [`Handler`] on a SQL database; a store without SQL transactions (mypage on
/// DynamoDB) implements it with conditional writes.
pub trait Apply: Send + Sync + 'static {
    fn apply(
        &self,
        consumer: &str,
        event: &EventEnvelope,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Applies a batch of events in delivery order, all or some of them: on an error the
    /// consumer applies each event of the batch again on its own, which the applier makes
    /// harmless for those already applied. One by one unless the applier does better.
    fn apply_all(
        &self,
        consumer: &str,
        batch: &[Received],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async move {
            for received in batch {
                self.apply(consumer, &received.event, &received.delivery)
                    .instrument(received.span.clone())
                    .await?;
            }
            Ok(())
        }
    }
}

/// An event as delivered, with the span that applies it.
pub struct Received {
    pub event: EventEnvelope,
    pub delivery: Delivery,
    span: tracing::Span,
}

/// A [`Handler`] behind the inbox table: the handler's change and the inbox row for the
/// event commit in one transaction, so a redelivery finds the row and changes nothing.
pub struct Inbox<H> {
    handler: H,
    db: DatabaseConnection,
}

impl<H: Handler> Inbox<H> {
    pub fn new(handler: H, db: DatabaseConnection) -> Self {
        Self { handler, db }
    }
}

impl<H: Handler> Apply for Inbox<H> {
    async fn apply(
        &self,
        consumer: &str,
        event: &EventEnvelope,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        self.handler.prepare(event).await?;
        let transaction = async {
            let txn = db::begin_write(&self.db).await?;
            if !inbox::record(&txn, consumer, &event.event_id, delivery.stream_sequence).await? {
                tracing::debug!(consumer, event_id = %event.event_id, "already applied; skipped");
                txn.rollback().await?;
                return Ok(false);
            }
            self.handler.handle(&txn, event, delivery).await?;
            txn.commit().await?;
            Ok::<_, HandlerError>(true)
        };
        let span = tracing::trace_span!(target: "otel::tracing", "inbox transaction");
        if transaction.instrument(span).await? {
            self.handler.after_commit();
        }
        Ok(())
    }

    /// The whole batch in one transaction: one commit for many events, the inbox rows
    /// keeping each applied once.
    async fn apply_all(&self, consumer: &str, batch: &[Received]) -> Result<(), HandlerError> {
        for received in batch {
            self.handler
                .prepare(&received.event)
                .instrument(received.span.clone())
                .await?;
        }
        let txn = db::begin_write(&self.db).await?;
        let mut changed = false;
        for Received {
            event,
            delivery,
            span,
        } in batch
        {
            // Each event's part of the shared transaction shows inside its own trace.
            let statements = tracing::trace_span!(
                target: "otel::tracing",
                parent: span,
                "inbox transaction",
                batch = batch.len()
            );
            let applied = async {
                if !inbox::record(&txn, consumer, &event.event_id, delivery.stream_sequence).await? {
                    tracing::debug!(consumer, event_id = %event.event_id, "already applied; skipped");
                    return Ok(false);
                }
                self.handler.handle(&txn, event, delivery).await?;
                Ok::<_, HandlerError>(true)
            }
            .instrument(statements)
            .await?;
            changed |= applied;
        }
        if changed {
            txn.commit().await?;
            self.handler.after_commit();
        } else {
            txn.rollback().await?;
        }
        Ok(())
    }
}

/// A durable consumer of some subjects, feeding an [`Apply`] (usually a [`Handler`] behind
/// the [`Inbox`]).
pub struct Consumer<A> {
    /// The durable name; replicas with the same name share the work.
    name: String,
    subjects: Vec<String>,
    applier: A,
    js: jetstream::Context,
    /// Failed deliveries before an event is dead-lettered.
    dead_letter_after: i64,
    /// Copies of the stream, should this consumer be the one to create it.
    stream_replicas: usize,
    /// Events not yet delivered to this consumer, as of its last delivery.
    lag: Arc<AtomicU64>,
    dead_letters: Counter<u64>,
}

impl<H: Handler> Consumer<Inbox<H>> {
    /// A consumer whose `handler` changes `db`, with the inbox in the same database.
    pub fn new(
        name: impl Into<String>,
        subjects: &[&str],
        handler: H,
        db: DatabaseConnection,
        js: jetstream::Context,
    ) -> Self {
        Self::with_applier(name, subjects, Inbox::new(handler, db), js)
    }
}

impl<A: Apply> Consumer<A> {
    /// A consumer that hands every event to `applier`, which makes repeats harmless itself.
    pub fn with_applier(
        name: impl Into<String>,
        subjects: &[&str],
        applier: A,
        js: jetstream::Context,
    ) -> Self {
        Self {
            name: name.into(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            applier,
            js,
            dead_letter_after: DEAD_LETTER_AFTER,
            stream_replicas: 1,
            lag: Arc::default(),
            dead_letters: metrics::dead_letters(),
        }
    }

    /// Creates the stream, when missing, with `replicas` copies instead of one.
    pub fn stream_replicas(mut self, replicas: usize) -> Self {
        self.stream_replicas = replicas;
        self
    }

    /// Dead-letters an event after `deliveries` failed deliveries instead of the default.
    pub fn dead_letter_after(mut self, deliveries: i64) -> Self {
        self.dead_letter_after = deliveries.max(1);
        self
    }

    /// Consumes until `shutdown` fires. NATS being away is waited out, never fatal.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.lag = metrics::consumer_lag(&self.name);
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let subscribed = tokio::select! {
                _ = shutdown.cancelled() => return,
                subscribed = self.subscribe() => subscribed,
            };
            let messages = match subscribed {
                Ok(messages) => {
                    backoff = Duration::from_millis(100);
                    messages
                }
                Err(err) => {
                    tracing::warn!(consumer = %self.name, error = %err, retry_in = ?backoff, "cannot subscribe yet");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            // Whatever has arrived meanwhile is applied together, up to a batch.
            let mut messages = messages.ready_chunks(MAX_BATCH);
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        self.hand_back(&mut messages).await;
                        return;
                    }
                    next = messages.next() => next,
                };
                let Some(results) = next else { break };
                let mut arrived = Vec::with_capacity(results.len());
                let mut broken = None;
                for result in results {
                    match result {
                        Ok(message) => arrived.push(message),
                        Err(err) => broken = Some(err),
                    }
                }
                self.process(arrived).await;
                if let Some(err) = broken {
                    tracing::warn!(consumer = %self.name, error = %err, "consumer stream error; resubscribing");
                    break;
                }
            }
        }
    }

    async fn subscribe(&self) -> Result<pull::Stream, async_nats::Error> {
        let stream = stream::ensure(&self.js, self.stream_replicas).await?;
        let config = pull::Config {
            durable_name: Some(self.name.clone()),
            filter_subjects: self.subjects.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: ACK_WAIT,
            // Unlimited: the loop dead-letters an event itself, so that a failure to store
            // the dead letter leads to a redelivery, never to a loss.
            max_deliver: -1,
            ..Default::default()
        };
        let mut consumer: PullConsumer = stream.get_or_create_consumer(&self.name, config.clone()).await?;
        // A new version may follow more subjects; an existing durable keeps its old ones
        // unless told.
        if consumer.cached_info().config.filter_subjects != self.subjects {
            tracing::info!(consumer = %self.name, subjects = ?self.subjects, "updating the consumer's subjects");
            consumer = stream.update_consumer(config).await?;
        }
        Ok(consumer.messages().await?)
    }

    /// Gives back the events that have arrived but will not be applied now, for another
    /// replica or the next start to have at once: unanswered, each would wait out
    /// [`ACK_WAIT`] first. Those still on the wire when the subscription ends do wait.
    async fn hand_back(
        &self,
        messages: &mut (impl Stream<Item = Vec<Result<jetstream::Message, MessagesError>>> + Unpin),
    ) {
        let mut handed_back = 0;
        while let Some(Some(results)) = messages.next().now_or_never() {
            for message in results.into_iter().flatten() {
                ack(&message, AckKind::Nak(None)).await;
                handed_back += 1;
            }
        }
        if handed_back > 0 {
            tracing::info!(consumer = %self.name, handed_back, "stopping; received events handed back for redelivery");
        }
    }

    /// Applies the events of `messages` together, then acks them; should that fail, applies
    /// each on its own, so that one failing event holds up only itself.
    async fn process(&self, arrived: Vec<jetstream::Message>) {
        let mut messages = Vec::with_capacity(arrived.len());
        let mut batch = Vec::with_capacity(arrived.len());
        for message in arrived {
            if let Some(received) = self.receive(&message).await {
                messages.push(message);
                batch.push(received);
            }
        }
        if batch.len() > 1 {
            match self.applier.apply_all(&self.name, &batch).await {
                Ok(()) => {
                    for message in &messages {
                        ack(message, AckKind::Ack).await;
                    }
                    return;
                }
                Err(err) => {
                    tracing::debug!(consumer = %self.name, error = %error_chain(&err), "batch not applied; applying its events one by one");
                }
            }
        }
        for (message, received) in messages.iter().zip(batch) {
            self.apply_one(message, received).await;
        }
    }

    /// The event in `message`, or `None` when it is not this consumer's to apply: replayed
    /// for another consumer (acked) or undecodable (dead-lettered).
    async fn receive(&self, message: &jetstream::Message) -> Option<Received> {
        let delivery = match message.info() {
            Ok(info) => {
                self.lag.store(info.pending, Ordering::Relaxed);
                Delivery {
                    stream_sequence: info.stream_sequence,
                    delivered: info.delivered,
                }
            }
            Err(err) => {
                tracing::warn!(consumer = %self.name, error = %err, "message without JetStream metadata");
                return None;
            }
        };
        if dead_letter::replayed_for_another(message.headers.as_ref(), &self.name) {
            ack(message, AckKind::Ack).await;
            return None;
        }
        let event = match EventEnvelope::decode(message.payload.clone()) {
            Ok(event) => event,
            Err(err) => {
                // Redelivering bytes that do not decode cannot help.
                self.dead_letter(message, &delivery, &format!("undecodable event: {err}"))
                    .await;
                return None;
            }
        };
        let span = trace::process_span(&self.name, &message.subject, message.headers.as_ref());
        Some(Received {
            event,
            delivery,
            span,
        })
    }

    async fn apply_one(&self, message: &jetstream::Message, received: Received) {
        let Received {
            event,
            delivery,
            span,
        } = received;
        let applied = self
            .applier
            .apply(&self.name, &event, &delivery)
            .instrument(span)
            .await;
        match applied {
            Ok(()) => ack(message, AckKind::Ack).await,
            Err(err) => {
                let error = error_chain(&err);
                if delivery.delivered >= self.dead_letter_after {
                    self.dead_letter(message, &delivery, &error).await;
                    return;
                }
                tracing::warn!(consumer = %self.name, event_id = %event.event_id, event_type = %event.event_type, delivered = delivery.delivered, error = %error, "event failed; it will be redelivered");
                let delay = retry_delay(delivery.delivered);
                ack(message, AckKind::Nak(Some(delay))).await;
            }
        }
    }

    /// Moves a poison message to the dead-letter stream, then stops its redelivery.
    async fn dead_letter(&self, message: &jetstream::Message, delivery: &Delivery, error: &str) {
        match dead_letter::send(
            &self.js,
            &self.name,
            message,
            delivery,
            error,
            self.stream_replicas,
        )
        .await
        {
            Ok(()) => {
                self.dead_letters.add(
                    1,
                    &[KeyValue::new("messaging.consumer.group.name", self.name.clone())],
                );
                tracing::error!(consumer = %self.name, subject = %message.subject, seq = delivery.stream_sequence, delivered = delivery.delivered, error, "event dead-lettered; replay it with `rentacar dead-letters replay` after the fix");
                ack(message, AckKind::Term).await;
            }
            Err(err) => {
                tracing::error!(consumer = %self.name, seq = delivery.stream_sequence, error = %err, "cannot store dead letter; the event will be redelivered");
                ack(message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }
}

async fn ack(message: &jetstream::Message, kind: AckKind) {
    // A lost ack means a redelivery, which the inbox absorbs.
    if let Err(err) = message.ack_with(kind).await {
        tracing::warn!(error = %err, "ack not sent");
    }
}

/// 0.25 s, 0.5 s, 1 s, ... doubling up to 30 s: quick for a passing fault, patient with a
/// longer outage.
fn retry_delay(delivered: i64) -> Duration {
    let doublings = delivered.clamp(1, 8) as u32 - 1;
    Duration::from_millis(250 * 2u64.pow(doublings)).min(Duration::from_secs(30))
}

/// An error and its causes on one line, for logs and dead-letter headers.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
