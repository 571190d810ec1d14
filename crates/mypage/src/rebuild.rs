//! `rentacar mypage rebuild`: empties the read model and applies every event of the stream
//! to it again, through the same projection the running service uses.
//!
//! Safe beside a running mypage: both apply events idempotently, so the service only sees
//! its views refill. Events published during the rebuild reach the views through the
//! service's durable consumer.

use async_nats::jetstream::{self, ErrorCode, consumer::pull::OrderedConfig, context::GetStreamErrorKind};
use futures::StreamExt;
use prost::Message as _;
use rentacar_events::{Apply, Delivery, Inbox, dead_letter, stream::STREAM_NAME};
use rentacar_proto::events::EventEnvelope;
use rentacar_runtime::db;

use crate::{
    Config, PROJECTION, StoreConfig,
    domain::{SUBJECTS, ViewEvent},
    dynamodb::DynamodbViews,
    migration::Migrator,
    sql::{SqlProjection, SqlViews},
};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot reach NATS at {url}")]
    Nats {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read the event stream")]
    Stream(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the read model's database failed")]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Table(#[from] crate::dynamodb::table::TableProblem),
    #[error("the read model's table failed")]
    Dynamodb(#[from] crate::dynamodb::DynamodbError),
    #[error("event at stream sequence {sequence} could not be applied")]
    Apply {
        sequence: u64,
        #[source]
        source: rentacar_events::HandlerError,
    },
}

/// Rebuilds the read model configured by `config`; returns how many events were applied.
pub async fn rebuild(config: &Config) -> Result<u64, RebuildError> {
    let nats_error = |source: Box<dyn std::error::Error + Send + Sync>| RebuildError::Nats {
        url: config.service.nats_url.clone(),
        source,
    };
    let client = async_nats::ConnectOptions::new()
        .name("mypage-rebuild")
        .connect(&config.service.nats_url)
        .await
        .map_err(|e| nats_error(e.into()))?;
    let js = jetstream::new(client);
    match &config.store {
        StoreConfig::Sql => {
            let db = db::connect_and_migrate::<Migrator>(&config.service.database_connect_url()).await?;
            SqlViews::new(db.clone()).clear(PROJECTION).await?;
            replay(&js, &Inbox::new(SqlProjection, db)).await
        }
        StoreConfig::Dynamodb(dynamodb) => {
            let views = DynamodbViews::connect(dynamodb).await;
            crate::dynamodb::table::check(views.client(), views.table(), dynamodb.create_table).await?;
            views.clear().await?;
            replay(&js, &views).await
        }
    }
}

/// Applies every event on mypage's subjects, from the first, to `applier`.
async fn replay(js: &jetstream::Context, applier: &impl Apply) -> Result<u64, RebuildError> {
    let stream = match js.get_stream(STREAM_NAME).await {
        Ok(stream) => stream,
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            // No stream yet: nothing was ever published.
            return Ok(0);
        }
        Err(err) => return Err(RebuildError::Stream(err.into())),
    };
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subjects: SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .map_err(|e| RebuildError::Stream(e.into()))?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| RebuildError::Stream(e.into()))?
        .num_pending;
    if pending == 0 {
        return Ok(0);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| RebuildError::Stream(e.into()))?;
    let mut applied = 0;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| RebuildError::Stream(e.into()))?;
        let info = message.info().map_err(RebuildError::Stream)?;
        let delivery = Delivery {
            stream_sequence: info.stream_sequence,
            delivered: 1,
        };
        let left = info.pending;
        if dead_letter::replayed_for_another(message.headers.as_ref(), PROJECTION) {
            if left == 0 {
                break;
            }
            continue;
        }
        match EventEnvelope::decode(message.payload.clone()) {
            Ok(event) => {
                applier
                    .apply(PROJECTION, &event, &delivery)
                    .await
                    .map_err(|source| RebuildError::Apply {
                        sequence: delivery.stream_sequence,
                        source,
                    })?;
                if ViewEvent::from_envelope(&event).is_some() {
                    applied += 1;
                }
            }
            Err(err) => {
                tracing::warn!(seq = delivery.stream_sequence, error = %err, "skipped an undecodable event")
            }
        }
        if left == 0 {
            break;
        }
    }
    Ok(applied)
}
