//! The gRPC server every service runs: its own services plus `grpc.health.v1` and server
//! reflection (v1 and v1alpha), load shedding, authentication, and a graceful drain on
//! shutdown.
//!
//! Start-up and shutdown follow what Kubernetes and Istio expect. Until the database is
//! migrated, [`serve_not_ready`] answers health checks with NOT_SERVING on the same port.
//! On shutdown health turns NOT_SERVING at once so readiness probes take the pod out of
//! rotation, calls keep being served for the drain period, then the listener closes and
//! in-flight calls finish (within a bounded grace period).

use std::{convert::Infallible, sync::Arc, time::Duration};

use futures::{Stream, future::BoxFuture};
use sea_orm::DatabaseConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{body::Body, server::NamedService, service::RoutesBuilder};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_tracing_opentelemetry::middleware::server::OtelGrpcLayer;

use crate::{
    authn::{AuthnLayer, WithoutToken},
    config::{Authentication, ServiceConfig},
    metrics::RpcMetricsLayer,
    shed::ShedLayer,
};

/// How often readiness re-checks the store.
const READINESS_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long one check may wait for the store.
const READINESS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Checks missed in a row before the service reports NOT_SERVING. One slow answer under
/// load (SQLite has a single connection) is not an outage.
const MISSES_BEFORE_NOT_SERVING: u32 = 3;

/// The health entry that is SERVING for as long as the process runs, whether or not it is
/// ready: what liveness and startup probes ask, so that a database outage or a drain never
/// gets a pod restarted.
pub const LIVENESS: &str = "liveness";

/// The largest request message a service decodes; every request of the API is far
/// smaller (its text fields are bounded), so anything larger is refused before it is
/// decoded (OUT_OF_RANGE), instead of at tonic's default of 4 MiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long calls in flight when the listener closes may take to finish: longer than any
/// call takes (reservation's two tries on payment take at most 8 s).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

/// A bound listener that servers take turns on: the not-ready one while the database is
/// migrated, then the real one. Bind it first (port 0 in tests) so the address is known.
#[derive(Clone)]
pub struct Listener(Arc<TcpListener>);

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self(Arc::new(listener))
    }
}

impl Listener {
    /// Accepted connections, with Nagle's algorithm off: a small response (most gRPC
    /// answers) would otherwise wait for the peer's delayed ACK, about 40 ms on Linux.
    fn incoming(&self) -> impl Stream<Item = std::io::Result<TcpStream>> + use<> {
        futures::stream::unfold(self.0.clone(), |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| {
                // Should it fail, the connection still works, only slower.
                let _ = stream.set_nodelay(true);
                stream
            });
            Some((accepted, listener))
        })
    }
}

/// Answers health checks with NOT_SERVING on `listener` until the returned guard is dropped:
/// the process is alive and says so, but is not ready for traffic.
pub fn serve_not_ready(listener: &Listener) -> DropGuard {
    let ready = CancellationToken::new();
    let incoming = listener.incoming();
    let stop = ready.clone();
    tokio::spawn(async move {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::NotServing).await;
        health.set_service_status(LIVENESS, ServingStatus::Serving).await;
        let served = tonic::transport::Server::builder()
            .add_service(health_service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "not-ready health server failed");
        }
    });
    ready.drop_guard()
}

/// Whether the store a service depends on answers; polled while the service runs.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// A gRPC server under construction.
pub struct Server {
    routes: RoutesBuilder,
    /// Names reported by health and reflection, besides the overall "" entry.
    service_names: Vec<&'static str>,
    drain_period: Duration,
    /// Checked periodically; a store that stops answering makes the service NOT_SERVING.
    readiness: Option<ReadinessCheck>,
    max_in_flight_calls: usize,
    authentication: Authentication,
    without_token: WithoutToken,
}

impl Server {
    pub fn new(config: &ServiceConfig) -> Self {
        Self {
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            drain_period: config.drain_period,
            readiness: None,
            max_in_flight_calls: config.max_in_flight_calls,
            authentication: config.authentication.clone(),
            without_token: WithoutToken::Refused,
        }
    }

    /// Takes a call without a token as another service's call on its own account (a call
    /// with a token must still carry a valid one). For payment, whose only callers are
    /// reservation's handlers (forwarding the customer's token) and its background tasks;
    /// the mesh admits calls to it only from reservation.
    pub fn accept_service_calls(mut self) -> Self {
        self.without_token = WithoutToken::ServiceCall;
        self
    }

    /// Adds a generated service server.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Readiness follows this database: NOT_SERVING while it does not answer.
    pub fn watch_database(self, database: DatabaseConnection) -> Self {
        self.ready_when(Arc::new(move || {
            let database = database.clone();
            Box::pin(async move { database.ping().await.is_ok() })
        }))
    }

    /// Readiness follows `check`: NOT_SERVING while it keeps answering false.
    pub fn ready_when(mut self, check: ReadinessCheck) -> Self {
        self.readiness = Some(check);
        self
    }

    /// Serves on `listener` until `shutdown` fires, then drains and returns.
    pub async fn serve(
        self,
        listener: impl Into<Listener>,
        shutdown: CancellationToken,
    ) -> Result<(), tonic::transport::Error> {
        let listener = listener.into();
        if matches!(self.authentication, Authentication::Off) {
            tracing::warn!(
                "authentication is OFF (RENTACAR_AUTH=off): every request acts for whoever it names"
            );
        }
        let (health, health_service) = tonic_health::server::health_reporter();
        set_status(&health, &self.service_names, ServingStatus::Serving).await;
        health.set_service_status(LIVENESS, ServingStatus::Serving).await;

        let reflection = || {
            // Both reflection versions are listed, so both must resolve (k6 looks up every
            // service it is shown); the builder would describe only its own version.
            let mut builder = tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(rentacar_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Lets grpcurl decode the google.rpc error details we send.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection");
            for name in &self.service_names {
                builder = builder.with_service_name(*name);
            }
            builder
        };
        let reflection_v1 = reflection().build_v1().expect("descriptor sets are compiled in");
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .expect("descriptor sets are compiled in");

        let mut routes = self.routes;
        routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let stop_accepting = CancellationToken::new();
        let watcher = tokio::spawn(watch(
            health.clone(),
            self.service_names.clone(),
            self.readiness,
            self.drain_period,
            shutdown,
            stop_accepting.clone(),
        ));

        let result = tonic::transport::Server::builder()
            // A span per call, continuing the caller's trace (health checks and
            // reflection are left out), and its duration by method and status.
            .layer(OtelGrpcLayer::default().filter(traced))
            .layer(RpcMetricsLayer::only(traced))
            // Beyond the limit, calls are answered UNAVAILABLE at once; probes never are.
            .layer(ShedLayer::new(self.max_in_flight_calls, |path| !traced(path)))
            // Every call but probes and reflection carries a valid token from here on.
            .layer(AuthnLayer::new(
                &self.authentication,
                self.without_token,
                |path| !traced(path),
            ))
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(listener.incoming(), stop_accepting.clone().cancelled_owned());
        // A peer that never answers the server's goodbye (hung, or cut off) would keep its
        // connection, and the process, open: calls get a bounded time to finish.
        let deadline = async {
            stop_accepting.cancelled().await;
            tokio::time::sleep(IN_FLIGHT_GRACE).await;
        };
        let result = tokio::select! {
            result = result => result,
            () = deadline => {
                tracing::warn!(grace = ?IN_FLIGHT_GRACE, "connections still open after the grace period; closing them");
                Ok(())
            }
        };
        watcher.abort();
        result
    }
}

/// Whether calls to `path` get a span and count in the RPC metrics: not probes' health
/// checks nor reflection.
fn traced(path: &str) -> bool {
    !path.starts_with("/grpc.health.") && !path.starts_with("/grpc.reflection.")
}

/// Keeps health in step with the store, and runs the drain when shutdown fires.
async fn watch(
    health: HealthReporter,
    names: Vec<&'static str>,
    readiness: Option<ReadinessCheck>,
    drain_period: Duration,
    shutdown: CancellationToken,
    stop_accepting: CancellationToken,
) {
    let mut ticks = tokio::time::interval(READINESS_CHECK_INTERVAL);
    let mut missed = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(check) = &readiness else { continue };
        let answered = tokio::select! {
            _ = shutdown.cancelled() => break,
            ready = tokio::time::timeout(READINESS_CHECK_TIMEOUT, check()) => ready.unwrap_or(false),
        };
        let was_serving = missed < MISSES_BEFORE_NOT_SERVING;
        missed = if answered { 0 } else { missed + 1 };
        let serving = missed < MISSES_BEFORE_NOT_SERVING;
        if serving != was_serving {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::warn!(store_answers = serving, "readiness changed");
            set_status(&health, &names, status).await;
        }
    }
    set_status(&health, &names, ServingStatus::NotServing).await;
    tracing::info!(drain = ?drain_period, "NOT_SERVING; draining before the listener closes");
    tokio::time::sleep(drain_period).await;
    stop_accepting.cancel();
}

async fn set_status(health: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in names {
        health.set_service_status(*name, status).await;
    }
}
