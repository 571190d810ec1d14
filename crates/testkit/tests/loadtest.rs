//! The load tests of `loadtest/` stay runnable: every ghz config calls a method the protos
//! define with fields its request has, and the k6 scenarios run against a platform, briefly
//! and slowly, with no error and every reservation confirmed.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use rentacar_testkit::{Backend, Platform, Svc};

fn loadtest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../loadtest")
}

/// Every service a client can call: ours and the health service.
fn descriptors() -> anyhow::Result<DescriptorPool> {
    let mut pool = DescriptorPool::decode(rentacar_proto::FILE_DESCRIPTOR_SET)?;
    pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)?;
    Ok(pool)
}

/// The request message of a ghz `call` ("package.Service.Method" or "package.Service/Method").
fn request_of(pool: &DescriptorPool, call: &str) -> anyhow::Result<MessageDescriptor> {
    let (service, method) = call
        .rsplit_once('/')
        .or_else(|| call.rsplit_once('.'))
        .ok_or_else(|| anyhow::anyhow!("{call} names no method"))?;
    let service = pool
        .get_service_by_name(service)
        .ok_or_else(|| anyhow::anyhow!("no service {service}"))?;
    let method = service
        .methods()
        .find(|m| m.name() == method)
        .ok_or_else(|| anyhow::anyhow!("{} has no method {method}", service.full_name()))?;
    Ok(method.input())
}

#[test]
fn ghz_configs_call_real_methods_with_real_fields() -> anyhow::Result<()> {
    let pool = descriptors()?;
    let dir = loadtest_dir().join("ghz");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        check_ghz_config(&pool, &path).map_err(|err| anyhow::anyhow!("{}: {err:#}", path.display()))?;
        checked.push(
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    checked.sort();
    for scenario in ["availability", "get", "health", "list", "reserve"] {
        assert!(
            checked.iter().any(|name| name == scenario),
            "no ghz config for {scenario} in {checked:?}"
        );
    }
    Ok(())
}

fn check_ghz_config(pool: &DescriptorPool, path: &Path) -> anyhow::Result<()> {
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let call = config["call"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no call"))?;
    let request = request_of(pool, call)?;
    // Unknown fields are refused, so a misspelt or outdated field fails here.
    let data = config.get("data").cloned().unwrap_or_default();
    DynamicMessage::deserialize(request.clone(), data)
        .map_err(|err| anyhow::anyhow!("data is not a {}: {err}", request.full_name()))?;
    // The protos it names must be where it says, relative to the config.
    let base = path.parent().expect("a folder");
    if let Some(proto) = config["proto"].as_str() {
        let imports: Vec<PathBuf> = config["import-paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .map(|p| base.join(p))
            .collect();
        anyhow::ensure!(
            imports.iter().any(|dir| dir.join(proto).is_file()) || base.join(proto).is_file(),
            "{proto} is not found from {imports:?}"
        );
    }
    Ok(())
}

/// Each k6 scenario, a few seconds at a low rate against one platform (all at once): k6's
/// own thresholds fail a run on any failed call or check and on any reservation not
/// confirmed; the summaries are read too, so that a run that did nothing cannot pass.
#[tokio::test]
async fn k6_scenarios_run_clean_against_the_platform() -> anyhow::Result<()> {
    let platform = Platform::start_authenticated(Backend::Sqlite).await?;
    let k6 = rentacar_testkit::tool("k6", "RENTACAR_K6");
    let token = platform
        .issuer()
        .token("k6-customer", false, Duration::from_secs(600));
    let manager = platform
        .issuer()
        .token("k6-manager", true, Duration::from_secs(600));
    let summaries = tempfile::tempdir()?;

    let scenarios = ["saga", "reserve", "get", "list", "availability", "health"];
    let mut runs = Vec::new();
    for scenario in scenarios {
        let summary = summaries.path().join(format!("{scenario}.json"));
        let mut command = tokio::process::Command::new(&k6);
        command
            .args(["run", "--quiet", "--no-usage-report", "--summary-export"])
            .arg(&summary)
            .arg(loadtest_dir().join(format!("k6/{scenario}.js")))
            .env("RATE", "4")
            .env("DURATION", "3s")
            .env("CARS", "4")
            .env("VUS", "4")
            .env("TOKEN", &token)
            .env("MANAGER_TOKEN", &manager)
            .env("RESERVATION_ADDR", platform.addr(Svc::Reservation).to_string())
            .env("PAYMENT_ADDR", platform.addr(Svc::Payment).to_string())
            .env("FLEET_ADDR", platform.addr(Svc::Fleet).to_string())
            .env("MYPAGE_ADDR", platform.addr(Svc::Mypage).to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        runs.push((scenario, summary, command.spawn()?.wait_with_output()));
    }
    let (names, outputs): (Vec<_>, Vec<_>) = runs
        .into_iter()
        .map(|(scenario, summary, run)| ((scenario, summary), run))
        .unzip();
    let outputs = futures::future::join_all(outputs).await;

    for ((scenario, summary), output) in names.iter().zip(outputs) {
        let output = output?;
        assert!(
            output.status.success(),
            "k6 {scenario} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(summary)?)?;
        let count = |metric: &str| summary["metrics"][metric]["count"].as_u64().unwrap_or(0);
        assert!(count("iterations") > 0, "k6 {scenario} ran no iteration");
        assert_eq!(count("grpc_errors"), 0, "k6 {scenario}");
        if *scenario == "saga" {
            assert_eq!(
                count("reservations_confirmed"),
                count("iterations"),
                "every reservation of the saga is confirmed"
            );
        }
    }
    platform.shutdown().await
}
