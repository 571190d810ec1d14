//! What every service process stands on: its store, a JetStream connection, its consumers
//! and, for a SQL service, its outbox with the relay draining it. A service adds its
//! handlers and its gRPC service, then [`Host::serve`] runs it all until shutdown.

use std::future::Future;

use async_nats::jetstream;
use rentacar_runtime::{
    RunError, Server, ServiceConfig, Tasks, db,
    server::{Listener, serve_not_ready},
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;

use crate::{Apply, Consumer, Handler, Outbox};

/// A service process; `S` is what it keeps its state in ([`Sql`] for most services).
pub struct Host<S> {
    listener: Listener,
    js: jetstream::Context,
    stream_replicas: usize,
    tasks: Tasks,
    state: S,
}

/// A service's own SQL database and the outbox that publishes from it.
pub struct Sql {
    db: DatabaseConnection,
    outbox: Outbox,
}

impl Host<Sql> {
    /// Waits for the database and migrates it with `M` (answering health checks on
    /// `listener` with NOT_SERVING meanwhile), connects to NATS in the background (a NATS
    /// outage delays events, never the service), and starts the relay.
    pub async fn start<M: MigratorTrait>(
        service: &str,
        config: &ServiceConfig,
        listener: impl Into<Listener>,
        shutdown: &CancellationToken,
    ) -> Result<Self, RunError> {
        let mut host = Host::start_with(service, config, listener, async {
            let db = db::wait_and_migrate::<M>(&config.database_connect_url(), shutdown).await?;
            Ok(Sql {
                db,
                outbox: Outbox::new(),
            })
        })
        .await?;
        let relay = host
            .state
            .outbox
            .relay(host.state.db.clone(), host.js.clone(), host.stream_replicas)
            .reporting_as(service);
        host.tasks.spawn(|stop| relay.run(stop));
        Ok(host)
    }

    pub fn db(&self) -> DatabaseConnection {
        self.state.db.clone()
    }

    pub fn outbox(&self) -> Outbox {
        self.state.outbox.clone()
    }

    /// Runs a durable consumer named `name` of `subjects` until the service stops; the
    /// handler's changes commit with the inbox in the service's database.
    pub fn consume<H: Handler>(&mut self, name: &str, subjects: &[&str], handler: H) {
        let consumer = Consumer::new(name, subjects, handler, self.state.db.clone(), self.js.clone())
            .stream_replicas(self.stream_replicas);
        self.tasks.spawn(|stop| consumer.run(stop));
    }

    /// Serves `server` (readiness following the database) until `shutdown` fires and it has
    /// drained, then stops the consumers and lets the relay flush.
    pub async fn serve(self, server: Server, shutdown: CancellationToken) -> Result<(), RunError> {
        let db = self.state.db.clone();
        self.serve_with(server.watch_database(db), shutdown).await
    }
}

impl<S> Host<S> {
    /// Answers health checks on `listener` with NOT_SERVING until `state` is ready (a store
    /// that is being migrated or checked), then connects to NATS in the background.
    pub async fn start_with(
        service: &str,
        config: &ServiceConfig,
        listener: impl Into<Listener>,
        state: impl Future<Output = Result<S, RunError>>,
    ) -> Result<Self, RunError> {
        let listener = listener.into();
        let not_ready = serve_not_ready(&listener);
        let state = state.await?;
        drop(not_ready);
        let nats = crate::connect(&config.nats_url, service)
            .await
            .map_err(|e| RunError::Setup("NATS client", e.into()))?;
        Ok(Self {
            listener,
            js: jetstream::new(nats),
            stream_replicas: config.stream_replicas,
            tasks: Tasks::new(),
            state,
        })
    }

    /// The NATS connection, for subscriptions outside JetStream.
    pub fn nats(&self) -> async_nats::Client {
        self.js.client()
    }

    /// What the service keeps its state in.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Runs a durable consumer named `name` of `subjects`, handing events to `applier`.
    pub fn consume_with<A: Apply>(&mut self, name: &str, subjects: &[&str], applier: A) {
        let consumer = Consumer::with_applier(name, subjects, applier, self.js.clone())
            .stream_replicas(self.stream_replicas);
        self.tasks.spawn(|stop| consumer.run(stop));
    }

    /// Runs another background task of the service until it stops.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Serves `server` until `shutdown` fires and it has drained, then stops the background
    /// tasks.
    pub async fn serve_with(self, server: Server, shutdown: CancellationToken) -> Result<(), RunError> {
        let result = server.serve(self.listener, shutdown).await;
        self.tasks.stop().await;
        Ok(result?)
    }
}
