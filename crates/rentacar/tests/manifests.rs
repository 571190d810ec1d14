//! The Kubernetes manifests match the binary: every variable they set is one it reads and
//! accepts, the ones a cluster needs are set, and probes and ports point where it serves.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use rentacar::Service;
use rentacar_runtime::{config::Env, server::LIVENESS, telemetry::TelemetryConfig};
use serde_yaml_ng::Value;

const SERVICES: [Service; 4] = [
    Service::Reservation,
    Service::Payment,
    Service::Fleet,
    Service::Mypage,
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every YAML document of `path`.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split("\n---")
        .map(|doc| {
            serde_yaml_ng::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The one document of `kind` in `path`.
fn document(path: &Path, kind: &str) -> Value {
    documents(path)
        .into_iter()
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {}", path.display()))
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a service's pod sees: its ConfigMap, `patch` over it, and its explicit `env`
/// entries (secret values stand in as placeholders).
fn pod_env(service: Service, patch: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let base = repo().join("deploy/k8s/base").join(service.name());
    let mut vars = string_map(&document(&base.join("configmap.yaml"), "ConfigMap")["data"]);
    vars.extend(patch.clone());
    for entry in container(service)["env"].as_sequence().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap().to_owned();
        let value = entry["value"].as_str().unwrap_or("from-a-secret").to_owned();
        vars.insert(name, value);
    }
    vars
}

fn container(service: Service) -> Value {
    let path = repo()
        .join("deploy/k8s/base")
        .join(service.name())
        .join("deployment.yaml");
    let deployment = document(&path, "Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0].clone()
}

/// Checks `vars` as `rentacar serve` would and returns where the service listens; fails
/// if a variable is one the binary never reads.
fn check_as_the_binary_does(service: Service, vars: &BTreeMap<String, String>) -> std::net::SocketAddr {
    let env = Env::from_pairs(vars.clone());
    let addr = service
        .check_config(&env)
        .unwrap_or_else(|e| panic!("{}'s manifests: {e}", service.name()));
    TelemetryConfig::from_env(&env, service.name()).unwrap();
    let asked = env.asked();
    let ignored: Vec<_> = vars.keys().filter(|name| !asked.contains(*name)).collect();
    assert!(
        ignored.is_empty(),
        "{}'s manifests set variables the binary never reads: {ignored:?}",
        service.name()
    );
    addr
}

#[test]
fn every_variable_set_is_read_and_the_needed_ones_are_set() {
    for service in SERVICES {
        let vars = pod_env(service, &BTreeMap::new());
        check_as_the_binary_does(service, &vars);
        for needed in [
            "RENTACAR_LISTEN_ADDR",
            "RENTACAR_DATABASE_URL",
            "RENTACAR_DATABASE_PASSWORD",
            "RENTACAR_NATS_URL",
            "RENTACAR_LOG_FORMAT",
        ] {
            assert!(vars.contains_key(needed), "{} lacks {needed}", service.name());
        }
        // A read-only root filesystem leaves nowhere for a SQLite file.
        assert!(vars["RENTACAR_DATABASE_URL"].starts_with("postgres://"));
    }
}

#[test]
fn reservation_calls_payment_where_payment_serves() {
    let vars = pod_env(Service::Reservation, &BTreeMap::new());
    let payment = document(&repo().join("deploy/k8s/base/payment/service.yaml"), "Service");
    let port = payment["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        vars["RENTACAR_PAYMENT_URL"],
        format!("http://payment.rentacar.svc.cluster.local:{port}")
    );
}

#[test]
fn probes_and_ports_point_where_the_binary_serves() {
    for service in SERVICES {
        let name = service.name();
        let addr = check_as_the_binary_does(service, &pod_env(service, &BTreeMap::new()));
        let container = container(service);
        let grpc = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|port| port["name"] == "grpc")
            .unwrap_or_else(|| panic!("{name} has no port named grpc"));
        assert_eq!(grpc["containerPort"].as_u64(), Some(addr.port() as u64), "{name}");

        for (probe, health_entry) in [
            ("startupProbe", LIVENESS),
            ("livenessProbe", LIVENESS),
            ("readinessProbe", ""),
        ] {
            let grpc_probe = &container[probe]["grpc"];
            assert_eq!(
                grpc_probe["port"].as_u64(),
                Some(addr.port() as u64),
                "{name} {probe}"
            );
            assert_eq!(
                grpc_probe["service"].as_str().unwrap_or(""),
                health_entry,
                "{name} {probe}"
            );
        }

        let svc = document(
            &repo().join("deploy/k8s/base").join(name).join("service.yaml"),
            "Service",
        );
        let port = &svc["spec"]["ports"][0];
        assert_eq!(port["name"], "grpc", "{name}");
        assert_eq!(port["appProtocol"], "grpc", "{name}");
        assert_eq!(port["targetPort"], "grpc", "{name}");
    }
}

/// Seconds in an Istio duration such as `30s`.
fn seconds(duration: &str) -> u64 {
    duration
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a duration in seconds: {duration}"))
}

#[test]
fn the_whole_shutdown_fits_in_the_sidecars_drain_and_the_grace_period() {
    let payment_deadline_ms: u64 =
        pod_env(Service::Reservation, &BTreeMap::new())["RENTACAR_PAYMENT_TIMEOUT_MS"]
            .parse()
            .unwrap();
    for service in SERVICES {
        let name = service.name();
        let vars = pod_env(service, &BTreeMap::new());
        let drain_ms: u64 = vars["RENTACAR_DRAIN_MS"].parse().unwrap();
        let path = repo().join("deploy/k8s/base").join(name).join("deployment.yaml");
        let template = document(&path, "Deployment")["spec"]["template"].clone();
        let grace_ms = template["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            * 1000;
        let proxy: Value = serde_yaml_ng::from_str(
            template["metadata"]["annotations"]["proxy.istio.io/config"]
                .as_str()
                .expect("the sidecar's config"),
        )
        .unwrap();
        let sidecar_ms = seconds(proxy["terminationDrainDuration"].as_str().unwrap()) * 1000;
        assert_eq!(proxy["holdApplicationUntilProxyStarts"], true, "{name}");
        let pre_stop_ms = container(service)["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap()
            * 1000;
        let shutdown_ms = pre_stop_ms
            + drain_ms
            // An in-flight Reserve may try payment more than once.
            + rentacar_reservation::longest_charge(std::time::Duration::from_millis(payment_deadline_ms)).as_millis()
                as u64
            + rentacar_events::outbox::FLUSH_ON_SHUTDOWN.as_millis() as u64
            + rentacar_runtime::telemetry::SHUTDOWN_BOUND.as_millis() as u64;
        assert!(
            shutdown_ms < sidecar_ms && sidecar_ms <= grace_ms,
            "{name}: the app's shutdown ({shutdown_ms} ms) must end before the sidecar's drain ({sidecar_ms} ms), within the grace period ({grace_ms} ms)"
        );
    }
}

#[test]
fn the_eks_overlay_switches_mypage_to_its_dynamodb_table() {
    let overlay = repo().join("deploy/k8s/overlays/eks");
    let patch = documents(&overlay.join("mypage-config.yaml"))
        .into_iter()
        .find(|doc| doc["kind"] == "ConfigMap" && doc["metadata"]["name"] == "mypage-config")
        .expect("the eks overlay patches mypage-config");
    let patch = string_map(&patch["data"]);
    let vars = pod_env(Service::Mypage, &patch);
    check_as_the_binary_does(Service::Mypage, &vars);
    assert_eq!(vars["RENTACAR_MYPAGE_STORE"], "dynamodb");
    let table = document(&overlay.join("mypage-table.yaml"), "Table");
    assert_eq!(
        Some(vars["RENTACAR_MYPAGE_DYNAMODB_TABLE"].as_str()),
        table["spec"]["tableName"].as_str()
    );
}

/// The kro stack sets the same variables, with values from its instance.
#[test]
fn the_kro_stack_sets_only_variables_the_binary_reads() {
    let graph = document(
        &repo().join("deploy/kro/rental-stack.yaml"),
        "ResourceGraphDefinition",
    );
    let mut read = BTreeSet::new();
    let on_dynamodb = BTreeMap::from([("RENTACAR_MYPAGE_STORE".to_owned(), "dynamodb".to_owned())]);
    for (service, patch) in SERVICES
        .map(|service| (service, BTreeMap::new()))
        .into_iter()
        .chain([(Service::Mypage, on_dynamodb)])
    {
        let env = Env::from_pairs(pod_env(service, &patch));
        service.check_config(&env).unwrap();
        TelemetryConfig::from_env(&env, service.name()).unwrap();
        read.extend(env.asked());
    }
    let mut config_maps = 0;
    for resource in graph["spec"]["resources"].as_sequence().unwrap() {
        let template = &resource["template"];
        if template["kind"] != "ConfigMap" {
            continue;
        }
        config_maps += 1;
        for name in string_map(&template["data"]).keys() {
            assert!(
                read.contains(name),
                "the kro stack sets {name}, which no service reads"
            );
        }
    }
    assert_eq!(config_maps, SERVICES.len());
}

/// The mesh checks the very tokens the services check: the same issuer, keys and audience,
/// at the gateway and at the sidecars, and it leaves the token on the request for them.
#[test]
fn the_mesh_checks_the_same_tokens_as_the_services() {
    let path = repo().join("mesh/istio/request-authentication.yaml");
    let checks: Vec<Value> = documents(&path)
        .into_iter()
        .filter(|doc| doc["kind"] == "RequestAuthentication")
        .collect();
    let namespaces: BTreeSet<_> = checks
        .iter()
        .map(|doc| doc["metadata"]["namespace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["istio-system".to_owned(), "rentacar".to_owned()])
    );
    for service in SERVICES {
        let vars = pod_env(service, &BTreeMap::new());
        for check in &checks {
            let rules = check["spec"]["jwtRules"].as_sequence().unwrap();
            assert_eq!(rules.len(), 1);
            let rule = &rules[0];
            assert_eq!(
                rule["issuer"].as_str(),
                Some(vars["RENTACAR_AUTH_ISSUER"].as_str())
            );
            assert_eq!(
                rule["jwksUri"].as_str(),
                Some(vars["RENTACAR_AUTH_JWKS"].as_str())
            );
            let audiences: Vec<_> = rule["audiences"].as_sequence().unwrap().iter().collect();
            assert_eq!(audiences, [vars["RENTACAR_AUTH_AUDIENCE"].as_str()]);
            assert_eq!(
                rule["forwardOriginalToken"].as_bool(),
                Some(true),
                "the services need the token"
            );
        }
    }
}
