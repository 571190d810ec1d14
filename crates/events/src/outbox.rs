//! The transactional outbox and the relay that drains it into JetStream.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, ErrorCode,
        context::{PublishError, PublishErrorKind},
    },
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Event, dead_letter, metrics::OutboxLag, stream, trace};

pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub event_id: String,
        pub subject: String,
        pub payload: Vec<u8>,
        pub created_at_ms: i64,
        pub sent_at_ms: Option<i64>,
        /// The trace context of the change that stored the event (W3C).
        pub traceparent: Option<String>,
        pub tracestate: Option<String>,
        /// When the stream refused the event for good; it is then a dead letter.
        pub failed_at_ms: Option<i64>,
        /// Why the stream refused it.
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Rows published per round trip to the database.
const BATCH: u64 = 128;

/// How often the relay looks for unsent rows when nobody woke it (after a restart, or when
/// a wake-up came while NATS was down).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long the relay keeps trying to flush on shutdown before leaving the rest for the
/// next start.
pub const FLUSH_ON_SHUTDOWN: Duration = Duration::from_secs(3);

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Stores events next to the state change that caused them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `event` to the outbox within the caller's transaction, with the current trace
    /// context, which the event continues when it is published.
    pub async fn store(&self, txn: &impl ConnectionTrait, event: &Event) -> Result<(), DbErr> {
        let (traceparent, tracestate) = trace::current();
        let row = entity::ActiveModel {
            event_id: Set(event.id().to_owned()),
            subject: Set(event.subject().to_owned()),
            payload: Set(event.encode()),
            created_at_ms: Set(now_ms()),
            sent_at_ms: Set(None),
            traceparent: Set(traceparent),
            tracestate: Set(tracestate),
            failed_at_ms: Set(None),
            error: Set(None),
            ..Default::default()
        };
        entity::Entity::insert(row).exec_without_returning(txn).await?;
        Ok(())
    }

    /// Tells the relay there is something to send. Call it after the transaction commits;
    /// a missed wake-up only delays the event until the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The relay that publishes this outbox's events from `db`.
    /// It creates the stream when missing, with `stream_replicas` copies.
    pub fn relay(&self, db: DatabaseConnection, js: jetstream::Context, stream_replicas: usize) -> Relay {
        Relay {
            db,
            js,
            stream_replicas,
            wake: self.wake.clone(),
            stream_ready: AtomicBool::new(false),
            lag: None,
            service: "unnamed".to_owned(),
        }
    }
}

/// How often the relay counts what it has not sent yet; a count is one indexed query.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes stored events in order and marks them sent once the stream acknowledged them.
pub struct Relay {
    db: DatabaseConnection,
    js: jetstream::Context,
    stream_replicas: usize,
    wake: Arc<Notify>,
    /// Whether the stream is known to exist; checked again after any publish failure.
    stream_ready: AtomicBool,
    /// Where the lag is reported, once the relay is named.
    lag: Option<Arc<OutboxLag>>,
    /// Whose outbox this is, as dead letters name it.
    service: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading or marking the outbox failed")]
    Database(#[from] DbErr),
    #[error("publishing to JetStream failed")]
    Publish(#[source] async_nats::Error),
}

impl Relay {
    /// Reports this outbox's lag as `service`'s (`rentacar.outbox.*` metrics).
    pub fn reporting_as(mut self, service: &str) -> Self {
        self.lag = Some(OutboxLag::registered(service));
        self.service = service.to_owned();
        self
    }

    /// Runs until `shutdown` fires, then makes one last bounded attempt to flush.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut measured = tokio::time::Instant::now() - LAG_INTERVAL;
        let mut pruned = tokio::time::Instant::now() - PRUNE_INTERVAL;
        loop {
            let outcome = self.publish_pending().await;
            if measured.elapsed() >= LAG_INTERVAL {
                self.measure_lag().await;
                measured = tokio::time::Instant::now();
            }
            if pruned.elapsed() >= PRUNE_INTERVAL {
                if let Err(err) = prune(&self.db, now_ms()).await {
                    tracing::warn!(error = %err, "outbox and inbox not pruned this time");
                }
                pruned = tokio::time::Instant::now();
            }
            let wait = match outcome {
                Ok(sent) if sent as u64 == BATCH => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    POLL_INTERVAL
                }
                Err(err) => {
                    tracing::warn!(error = %err, cause = ?std::error::Error::source(&err), retry_in = ?backoff, "outbox relay could not publish; events stay stored");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }

        let flush = async {
            while let Ok(sent) = self.publish_pending().await {
                if sent == 0 {
                    break;
                }
            }
        };
        if tokio::time::timeout(FLUSH_ON_SHUTDOWN, flush).await.is_err() {
            tracing::warn!("outbox not empty at shutdown; the next start sends the rest");
        }
    }

    async fn measure_lag(&self) {
        let Some(lag) = &self.lag else { return };
        let unsent = || {
            entity::Entity::find()
                .filter(entity::Column::SentAtMs.is_null())
                .filter(entity::Column::FailedAtMs.is_null())
        };
        let oldest = unsent().order_by_asc(entity::Column::Id).one(&self.db).await;
        match (pending(&self.db).await, oldest) {
            (Ok(count), Ok(oldest)) => {
                let age = oldest.map_or(0, |row| (now_ms() - row.created_at_ms).max(0) as u64);
                lag.set(count, age);
            }
            (Err(err), _) | (_, Err(err)) => tracing::debug!(error = %err, "outbox lag not measured"),
        }
    }

    /// Publishes one batch of unsent events, oldest first; returns how many were sent.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let pending = entity::Entity::find()
            .filter(entity::Column::SentAtMs.is_null())
            .filter(entity::Column::FailedAtMs.is_null())
            .order_by_asc(entity::Column::Id)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        if pending.is_empty() {
            return Ok(0);
        }
        if !self.stream_ready.load(Ordering::Relaxed) {
            stream::ensure(&self.js, self.stream_replicas)
                .await
                .map_err(RelayError::Publish)?;
            self.stream_ready.store(true, Ordering::Relaxed);
        }

        // Send the whole batch, then collect acks: one round trip of latency, not one each.
        let mut acks = Vec::with_capacity(pending.len());
        for row in &pending {
            let span = trace::publish_span(
                &row.subject,
                &row.event_id,
                row.traceparent.as_deref(),
                row.tracestate.as_deref(),
            );
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", row.event_id.as_str());
            trace::inject(&span, &mut headers);
            let published = self
                .js
                .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
                .await;
            let ack = match published {
                Ok(ack) => ack,
                Err(err) if refused_for_good(&err) => {
                    self.set_aside(row, &err).await?;
                    continue;
                }
                Err(err) => {
                    self.stream_ready.store(false, Ordering::Relaxed);
                    return Err(RelayError::Publish(err.into()));
                }
            };
            // The span ends once the stream acknowledged the event.
            acks.push((row, ack, span));
        }
        let mut sent = Vec::with_capacity(acks.len());
        let mut failure = None;
        for (row, ack, _span) in acks {
            match ack.await {
                Ok(_) => sent.push(row.id),
                Err(err) if refused_for_good(&err) => self.set_aside(row, &err).await?,
                Err(err) => {
                    failure = Some(RelayError::Publish(err.into()));
                    break;
                }
            }
        }
        if !sent.is_empty() {
            entity::Entity::update_many()
                .col_expr(entity::Column::SentAtMs, Expr::value(now_ms()))
                .filter(entity::Column::Id.is_in(sent.clone()))
                .exec(&self.db)
                .await?;
            tracing::debug!(count = sent.len(), "outbox events published");
        }
        match failure {
            Some(err) => {
                self.stream_ready.store(false, Ordering::Relaxed);
                Err(err)
            }
            // Rows set aside count as handled: the next batch follows at once.
            None => Ok(pending.len()),
        }
    }

    /// Keeps an event the stream refused for good out of the way: the row stays, marked
    /// with the refusal, and a dead letter (without the payload, which is what was refused)
    /// makes it visible to `rentacar dead-letters list`.
    async fn set_aside(&self, row: &entity::Model, err: &PublishError) -> Result<(), RelayError> {
        let error = format!(
            "{err}: {}",
            std::error::Error::source(err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        dead_letter::send_unpublishable(&self.js, &self.service, row, &error, self.stream_replicas)
            .await
            .map_err(RelayError::Publish)?;
        entity::Entity::update_many()
            .col_expr(entity::Column::FailedAtMs, Expr::value(now_ms()))
            .col_expr(entity::Column::Error, Expr::value(error.clone()))
            .filter(entity::Column::Id.eq(row.id))
            .exec(&self.db)
            .await?;
        tracing::error!(event_id = %row.event_id, subject = %row.subject, %error, "event refused by the stream; set aside as a dead letter");
        Ok(())
    }
}

/// Whether the stream will never take this event as it is: larger than the server or the
/// stream allows. Anything else (no connection, a full stream) may pass, and the row waits.
fn refused_for_good(err: &PublishError) -> bool {
    if err.kind() == PublishErrorKind::MaxPayloadExceeded {
        return true;
    }
    let code = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    matches!(
        code,
        Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM | ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM)
    )
}

/// How often sent outbox rows and old inbox rows are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Deletes outbox rows sent longer ago than the stream's duplicate window (a re-send of
/// theirs would no longer be dropped, but a sent row is never sent again) and inbox rows
/// older than anything the stream still keeps (no redelivery can bring their event back).
/// Dead letters stay until an operator deals with them.
pub async fn prune(db: &DatabaseConnection, now_ms: i64) -> Result<(u64, u64), DbErr> {
    let outbox = entity::Entity::delete_many()
        .filter(entity::Column::SentAtMs.lt(now_ms - stream::DUPLICATE_WINDOW.as_millis() as i64))
        .exec(db)
        .await?;
    let inbox = crate::inbox::prune(db, now_ms - stream::INBOX_RETENTION.as_millis() as i64).await?;
    if outbox.rows_affected + inbox > 0 {
        tracing::debug!(outbox = outbox.rows_affected, inbox, "old rows pruned");
    }
    Ok((outbox.rows_affected, inbox))
}

/// Counts events not yet acknowledged by the stream: the outbox lag.
pub async fn pending(db: &DatabaseConnection) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    entity::Entity::find()
        .filter(entity::Column::SentAtMs.is_null())
        .filter(entity::Column::FailedAtMs.is_null())
        .count(db)
        .await
}
