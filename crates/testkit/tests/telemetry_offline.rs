//! A collector that accepts connections and never answers changes nothing for clients:
//! exports are batched off the request path, and shutting down gives up after a bound.

use rentacar_proto::reservation::ReservationStatus;
use rentacar_runtime::{
    config::Env,
    telemetry::{self, TelemetryConfig},
};
use rentacar_testkit::{Backend, Platform, day, register_car, reserve};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_changes_nothing_for_clients() -> anyhow::Result<()> {
    // Takes every connection and holds it without a byte in either direction.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", silent.local_addr()?);
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            connections.push(connection);
        }
    });
    let env = Env::from_pairs([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
    ]);
    let telemetry = telemetry::init(&TelemetryConfig::from_env(&env, "rentacar-test")?)?;

    let platform = Platform::start(Backend::Sqlite).await?;
    register_car(&platform, "QUIET-1", "Corolla", 5000).await?;
    let mut client = platform.reservation().await;
    for n in 1..=5 {
        let pickup = day(340 + 2 * n as u64).to_owned();
        let ret = day(341 + 2 * n as u64).to_owned();
        let reserved = client
            .reserve(reserve(&format!("quiet-{n}"), "quinn", "QUIET-1", &pickup, &ret))
            .await?
            .into_inner()
            .reservation
            .unwrap();
        platform
            .watch_until(&reserved.reservation_id, |r| {
                r.status() == ReservationStatus::Confirmed
            })
            .await?;
    }

    let bound = telemetry::SHUTDOWN_BOUND + std::time::Duration::from_secs(3);
    tokio::time::timeout(bound, telemetry.shutdown())
        .await
        .expect("shutting down telemetry gives up on a silent collector");
    held.abort();
    platform.shutdown().await
}
