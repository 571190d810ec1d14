//! What every service process stands on: its migrated database, a JetStream connection,
//! its outbox with the relay draining it, and its consumers. A service adds its handlers
//! and its gRPC service, then [`Host::serve`] runs it all until shutdown.

use async_nats::jetstream;
use rentacar_runtime::{
    RunError, Server, ServiceConfig, Tasks, db,
    server::{Listener, serve_not_ready},
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio_util::sync::CancellationToken;

use crate::{Consumer, Handler, Outbox};

pub struct Host {
    listener: Listener,
    db: DatabaseConnection,
    js: jetstream::Context,
    outbox: Outbox,
    tasks: Tasks,
}

impl Host {
    /// Waits for the database and migrates it with `M` (answering health checks on
    /// `listener` with NOT_SERVING meanwhile), connects to NATS in the background (a NATS
    /// outage delays events, never the service), and starts the relay.
    pub async fn start<M: MigratorTrait>(
        service: &str,
        config: &ServiceConfig,
        listener: impl Into<Listener>,
        shutdown: &CancellationToken,
    ) -> Result<Self, RunError> {
        let listener = listener.into();
        let not_ready = serve_not_ready(&listener);
        let db = db::wait_and_migrate::<M>(&config.database_url, shutdown).await?;
        drop(not_ready);
        let nats = crate::connect(&config.nats_url, service)
            .await
            .map_err(|e| RunError::Setup("NATS client", e.into()))?;
        let js = jetstream::new(nats);
        let outbox = Outbox::new();
        let mut tasks = Tasks::new();
        let relay = outbox.relay(db.clone(), js.clone());
        tasks.spawn(|stop| relay.run(stop));
        Ok(Self {
            listener,
            db,
            js,
            outbox,
            tasks,
        })
    }

    pub fn db(&self) -> DatabaseConnection {
        self.db.clone()
    }

    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Runs a durable consumer named `name` of `subjects` until the service stops.
    pub fn consume<H: Handler>(&mut self, name: &str, subjects: &[&str], handler: H) {
        let consumer = Consumer::new(name, subjects, handler, self.db.clone(), self.js.clone());
        self.tasks.spawn(|stop| consumer.run(stop));
    }

    /// Runs another background task of the service until it stops.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Serves `server` (readiness following the database) until `shutdown` fires and it has
    /// drained, then stops the consumers and lets the relay flush.
    pub async fn serve(self, server: Server, shutdown: CancellationToken) -> Result<(), RunError> {
        let result = server
            .watch_database(self.db)
            .serve(self.listener, shutdown)
            .await;
        self.tasks.stop().await;
        Ok(result?)
    }
}
