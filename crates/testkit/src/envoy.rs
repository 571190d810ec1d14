//! A real Envoy in front of payment replicas, configured as Istio's sidecar would be from
//! payment's DestinationRule and VirtualService in mesh/istio (read from the YAML, so the
//! tests cannot drift from what ships): a cluster with the rule's circuit breakers and
//! outlier detection, a route with the service's timeout and retries (and the
//! `previous_hosts` retry predicate Istio adds), and endpoints a test updates as Kubernetes'
//! endpoint controller would, from readiness. The binary comes from `RENTACAR_ENVOY`, which
//! `cargo xtask test` sets to the Envoy it installs.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use rentacar_proto::payment::payment_service_client::PaymentServiceClient;
use serde_json::json;
use serde_yaml_ng::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};
use tonic::transport::Channel;

use crate::free_port;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first document of `file` (under mesh/istio) of `kind` named `name`.
fn istio_resource(file: &str, kind: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("mesh/istio").join(file)).unwrap();
    text.split("\n---")
        .map(|doc| serde_yaml_ng::from_str::<Value>(doc).unwrap())
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in mesh/istio/{file}"))
}

/// Payment's mesh policy, as Istio would hand it to the sidecar of a caller.
pub struct PaymentPolicy {
    pub max_connections: u64,
    pub max_requests: u64,
    pub max_pending_requests: u64,
    pub max_requests_per_connection: u64,
    pub consecutive_5xx: u64,
    pub interval: String,
    pub base_ejection_time: String,
    pub max_ejection_percent: u64,
    pub timeout: String,
    pub retries: u64,
    pub per_try_timeout: Option<String>,
    pub retry_on: String,
}

impl PaymentPolicy {
    /// Read from mesh/istio: the DestinationRule and VirtualService named `payment`.
    pub fn from_mesh() -> Self {
        let rule = istio_resource("destination-rules.yaml", "DestinationRule", "payment");
        let policy = &rule["spec"]["trafficPolicy"];
        let pool = &policy["connectionPool"];
        let outlier = &policy["outlierDetection"];
        let service = istio_resource("virtual-services.yaml", "VirtualService", "payment");
        let route = &service["spec"]["http"][0];
        let number = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a number: {v:?}"));
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v:?}"))
                .to_owned()
        };
        Self {
            max_connections: number(&pool["tcp"]["maxConnections"]),
            max_requests: number(&pool["http"]["http2MaxRequests"]),
            max_pending_requests: number(&pool["http"]["http1MaxPendingRequests"]),
            max_requests_per_connection: number(&pool["http"]["maxRequestsPerConnection"]),
            consecutive_5xx: number(&outlier["consecutive5xxErrors"]),
            interval: text(&outlier["interval"]),
            base_ejection_time: text(&outlier["baseEjectionTime"]),
            max_ejection_percent: number(&outlier["maxEjectionPercent"]),
            timeout: text(&route["timeout"]),
            retries: number(&route["retries"]["attempts"]),
            per_try_timeout: route["retries"]["perTryTimeout"].as_str().map(str::to_owned),
            retry_on: text(&route["retries"]["retryOn"]),
        }
    }
}

/// How the test's route treats calls.
#[derive(Clone, Copy)]
pub enum Route {
    /// The VirtualService's timeout and retries.
    Mesh,
    /// No timeout and no retries: only the DestinationRule's limits act.
    Plain,
}

/// A running Envoy in front of payment replicas; killed on drop.
pub struct Envoy {
    process: Child,
    _dir: tempfile::TempDir,
    endpoints_file: PathBuf,
    listen: u16,
    admin: u16,
}

impl Envoy {
    /// Starts Envoy on a free port, routing payment's calls to `endpoints`.
    pub async fn start(policy: &PaymentPolicy, route: Route, endpoints: &[SocketAddr]) -> Self {
        let binary = std::env::var("RENTACAR_ENVOY")
            .expect("RENTACAR_ENVOY names the Envoy binary: run `cargo xtask test`, which installs it");
        let dir = tempfile::tempdir().unwrap();
        let endpoints_file = dir.path().join("payment-endpoints.yaml");
        let (listen, admin) = (free_port(), free_port());
        let route_policy = match route {
            Route::Mesh => json!({
                "cluster": "payment",
                "timeout": policy.timeout,
                "retry_policy": {
                    "retry_on": policy.retry_on,
                    "num_retries": policy.retries,
                    "retry_host_predicate": [{
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                        }
                    }],
                    "host_selection_retry_max_attempts": 5
                }
            }),
            Route::Plain => json!({"cluster": "payment", "timeout": "0s"}),
        };
        // Unset in the VirtualService, as in Envoy: each try may take the whole timeout.
        let mut route_policy = route_policy;
        if let (Route::Mesh, Some(per_try)) = (route, &policy.per_try_timeout) {
            route_policy["retry_policy"]["per_try_timeout"] = json!(per_try);
        }
        let mut protocol = json!({
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}
        });
        // Istio leaves max_requests_per_connection unset for 0 (no limit).
        if policy.max_requests_per_connection > 0 {
            protocol["common_http_protocol_options"] =
                json!({"max_requests_per_connection": policy.max_requests_per_connection});
        }
        let address = |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
        let bootstrap = json!({
            "node": {"id": "rentacar-test", "cluster": "rentacar-test"},
            "admin": {"address": address(admin)},
            "static_resources": {
                "listeners": [{
                    "name": "payment",
                    "address": address(listen),
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "payment",
                            "codec_type": "HTTP2",
                            "route_config": {"virtual_hosts": [{
                                "name": "payment",
                                "domains": ["*"],
                                "routes": [{
                                    "match": {"prefix": "/rentacar.payment.v1.PaymentService/"},
                                    "route": route_policy
                                }]
                            }]},
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }]
                        }
                    }]}]
                }],
                "clusters": [{
                    "name": "payment",
                    "type": "EDS",
                    "connect_timeout": "1s",
                    "eds_cluster_config": {"eds_config": {
                        "resource_api_version": "V3",
                        "path_config_source": {"path": endpoints_file}
                    }},
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocol
                    },
                    "circuit_breakers": {"thresholds": [{
                        "max_connections": policy.max_connections,
                        "max_requests": policy.max_requests,
                        "max_pending_requests": policy.max_pending_requests,
                        // Istio's default: retries are bounded by the route, not here.
                        "max_retries": u32::MAX
                    }]},
                    "outlier_detection": {
                        "consecutive_5xx": policy.consecutive_5xx,
                        "enforcing_consecutive_5xx": 100,
                        "enforcing_consecutive_gateway_failure": 0,
                        "enforcing_success_rate": 0,
                        "interval": policy.interval,
                        "base_ejection_time": policy.base_ejection_time,
                        "max_ejection_percent": policy.max_ejection_percent
                    }
                }]
            }
        });
        let config = dir.path().join("envoy.json");
        std::fs::write(&config, bootstrap.to_string()).unwrap();
        // Envoy reads the endpoints file at start: it must be there.
        write_endpoints(&endpoints_file, endpoints);
        let mut envoy = Self {
            process: Command::new(binary)
                .arg("--config-path")
                .arg(&config)
                .args(["--disable-hot-restart", "--log-level", "error"])
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("starting envoy"),
            _dir: dir,
            endpoints_file,
            listen,
            admin,
        };
        wait_until("Envoy is live", || {
            if let Ok(Some(status)) = envoy.process.try_wait() {
                panic!("envoy exited: {status}");
            }
            async { envoy_get(admin, "/ready").await.contains("LIVE") }
        })
        .await;
        envoy.set_endpoints(endpoints).await;
        envoy
    }

    /// Replaces the cluster's endpoints, as the endpoint controller does when readiness
    /// changes; waits until Envoy has taken them.
    pub async fn set_endpoints(&mut self, endpoints: &[SocketAddr]) {
        write_endpoints(&self.endpoints_file, endpoints);
        if let Ok(Some(status)) = self.process.try_wait() {
            panic!("envoy exited: {status}");
        }
        let admin = self.admin;
        let wanted: Vec<String> = endpoints.iter().map(|a| a.to_string()).collect();
        wait_until("Envoy to take the new endpoints", || {
            let wanted = wanted.clone();
            async move {
                let clusters = envoy_get(admin, "/clusters").await;
                let hosts: std::collections::BTreeSet<&str> = clusters
                    .lines()
                    .filter_map(|line| line.strip_prefix("payment::"))
                    .filter_map(|rest| rest.split("::").next())
                    .filter(|host| host.contains(':'))
                    .collect();
                hosts.len() == wanted.len() && wanted.iter().all(|w| hosts.contains(w.as_str()))
            }
        })
        .await;
    }

    /// Where callers reach payment through Envoy.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen)
    }

    pub async fn client(&self) -> PaymentServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.listen))
            .unwrap()
            .connect()
            .await
            .unwrap();
        PaymentServiceClient::new(channel)
    }

    /// A counter or gauge of Envoy's admin stats, 0 when absent.
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = envoy_get(self.admin, &format!("/stats?filter=^{name}$")).await;
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether outlier detection has ejected the endpoint at `addr`.
    pub async fn ejected(&self, addr: SocketAddr) -> bool {
        envoy_get(self.admin, "/clusters").await.lines().any(|line| {
            line.starts_with(&format!("payment::{addr}::health_flags::"))
                && line.contains("failed_outlier_check")
        })
    }
}

/// Writes the cluster's endpoints where Envoy watches for them, moving the file into place
/// as Envoy expects.
fn write_endpoints(path: &Path, endpoints: &[SocketAddr]) {
    let hosts: String = endpoints
        .iter()
        .map(|addr| {
            format!(
                "
            - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}",
                addr.ip(),
                addr.port()
            )
        })
        .collect();
    let assignment = format!(
        "resources:
  - \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    cluster_name: payment
    endpoints:
      - lb_endpoints:{hosts}
"
    );
    let staging = path.with_extension("next");
    std::fs::write(&staging, assignment).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// The body of an HTTP GET on Envoy's admin port.
async fn envoy_get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    // Envoy answers HTTP/1.1 only; closing makes the end of the body the end of the stream.
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Waits until `check` holds, polling; fails the test after [`crate::EVENTUALLY`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    crate::eventually(what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}
