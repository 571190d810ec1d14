//! Background tasks of a service (outbox relay, consumers) and how a service run ends.

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("database unavailable or its migration failed")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0} could not be set up")]
    Setup(&'static str, #[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
}

/// Tasks that run beside the gRPC server and stop after it has drained, so that events
/// produced by the last calls are still relayed.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    stop: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task`, handing it the token that tells it to finish.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.set.spawn(task(self.stop.clone()));
    }

    /// Asks every task to finish and waits for them.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while let Some(result) = self.set.join_next().await {
            // Only where panics unwind (debug builds and tests): the release build aborts.
            if let Err(err) = result
                && err.is_panic()
            {
                tracing::error!(error = %err, "background task panicked");
            }
        }
    }
}
