//! The `rentacar` binary as an operator runs it: configuration errors, migrations, readiness
//! without NATS, reflection, a graceful stop on SIGTERM, and signing in with the tokens
//! `rentacar token` prints.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use rentacar_testkit::free_port;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_rentacar");
/// The health entry the manifests' liveness and startup probes ask for.
const LIVENESS: &str = rentacar_runtime::server::LIVENESS;

#[test]
fn a_bad_variable_is_named_and_the_process_exits_non_zero() {
    let output = Command::new(BIN)
        .args(["serve", "fleet"])
        .env("RENTACAR_DRAIN_MS", "soon")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RENTACAR_DRAIN_MS=\"soon\""), "{stderr}");

    let output = Command::new(BIN)
        .args(["serve", "fleet"])
        .env("RENTACAR_DATABASE_URL", "mysql://x")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RENTACAR_DATABASE_URL"));
}

#[test]
fn migrate_applies_every_migration_and_is_repeatable() {
    let data = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = Command::new(BIN)
            .args(["migrate", "reservation"])
            .env("RENTACAR_DATA_DIR", data.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "reservation: 8 migrations applied"
        );
    }
    assert!(data.path().join("reservation.db").is_file());
}

async fn channel(port: u16) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await
}

async fn health(port: u16, service: &str) -> Option<i32> {
    let mut client = HealthClient::new(channel(port).await.ok()?);
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await;
    Some(response.ok()?.into_inner().status)
}

async fn wait_for_health(port: u16, wanted: ServingStatus) {
    wait_for_health_of(port, "rentacar.fleet.v1.FleetService", wanted).await
}

async fn wait_for_health_of(port: u16, service: &str, wanted: ServingStatus) {
    for _ in 0..400 {
        if health(port, service).await == Some(wanted as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health of {service:?} never became {wanted:?}");
}

/// `rentacar serve fleet` on `port` with its SQLite file in `data` and a NATS address
/// nobody listens on.
fn fleet_without_nats(data: &std::path::Path, port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["serve", "fleet"])
        .env("RENTACAR_DATA_DIR", data)
        .env("RENTACAR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RENTACAR_NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .env("RENTACAR_AUTH", "off");
    command
}

/// [`fleet_without_nats`] started with `drain_ms` of drain and its output dropped.
fn quiet_fleet(data: &std::path::Path, port: u16, drain_ms: &str) -> tokio::process::Child {
    fleet_without_nats(data, port)
        .env("RENTACAR_DRAIN_MS", drain_ms)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Asks `child` to stop, as Kubernetes does.
fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// With NATS unreachable the service is still ready (its outbox holds events). On SIGTERM
/// it turns NOT_SERVING at once, keeps answering through the drain, then exits 0.
#[tokio::test]
async fn serves_without_nats_and_drains_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = quiet_fleet(data.path(), port, "1500");
    wait_for_health(port, ServingStatus::Serving).await;

    let services = reflected_services(port).await;
    for expected in [
        "rentacar.fleet.v1.FleetService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }

    sigterm(&child);
    wait_for_health(port, ServingStatus::NotServing).await;
    assert_eq!(
        health(port, LIVENESS).await,
        Some(ServingStatus::Serving as i32),
        "a draining process is still alive"
    );
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// A peer that opened a connection and then stopped reading (hung, or cut off) never
/// answers the server's goodbye; the process still exits, after a bounded grace period.
#[tokio::test]
async fn a_silent_peer_does_not_hold_up_the_exit() {
    use tokio::io::AsyncWriteExt;

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = quiet_fleet(data.path(), port, "0");
    wait_for_health(port, ServingStatus::Serving).await;

    // An HTTP/2 client preface and empty SETTINGS, then silence.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();

    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the process exits although a peer keeps its connection open")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    drop(silent);
}

/// The services reflection lists, each checked to resolve: clients such as k6 look up every
/// one they are shown, the reflection services included.
async fn reflected_services(port: u16) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let client = ServerReflectionClient::new(channel(port).await.unwrap());
    let answers = |request| {
        let mut client = client.clone();
        async move {
            let mut responses = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            responses.message().await.unwrap().unwrap().message_response
        }
    };
    let services: Vec<String> = match answers(ask(MessageRequest::ListServices(String::new()))).await {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection response {other:?}"),
    };
    for service in &services {
        match answers(ask(MessageRequest::FileContainingSymbol(service.clone()))).await {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                assert!(
                    !files.file_descriptor_proto.is_empty(),
                    "{service} resolves to nothing"
                )
            }
            other => panic!("{service} is listed but does not resolve: {other:?}"),
        }
    }
    services
}

/// A pod whose database is not there yet is alive and says NOT_SERVING; it turns SERVING
/// by itself once the database appears and is migrated.
#[tokio::test]
async fn not_serving_until_the_database_is_there() {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database};

    let admin_url = std::env::var("RENTACAR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap()
        .to_owned();
    let name = format!(
        "rentacar_test_{}_late",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "fleet"])
        .env("RENTACAR_DATABASE_URL", format!("{base}/{name}"))
        .env("RENTACAR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RENTACAR_NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .env("RENTACAR_DRAIN_MS", "0")
        .env("RENTACAR_AUTH", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_health_of(port, "", ServingStatus::NotServing).await;
    assert_eq!(
        health(port, LIVENESS).await,
        Some(ServingStatus::Serving as i32),
        "waiting for its database, the process is alive: no restart"
    );

    let admin = Database::connect(&admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    wait_for_health_of(port, "", ServingStatus::Serving).await;
    wait_for_health(port, ServingStatus::Serving).await;

    child.kill().await.unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// The operator's dead-letter commands reach NATS and report; listing creates nothing.
#[tokio::test]
async fn dead_letter_commands_report_what_they_find() {
    use rentacar_events::nats_server::NatsServer;

    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&NatsServer::find_binary().expect("nats-server"), 0, store.path())
        .await
        .unwrap();
    for (action, expected) in [("list", "0 dead letters"), ("replay", "0 dead letters replayed")] {
        let output = Command::new(BIN)
            .args(["dead-letters", action])
            .env("RENTACAR_NATS_URL", nats.url())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected);
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    assert!(
        js.get_stream(rentacar_events::dead_letter::STREAM_NAME)
            .await
            .is_err(),
        "listing must not create the dead-letter stream"
    );

    let output = Command::new(BIN)
        .args(["dead-letters", "list"])
        .env("RENTACAR_NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!output.status.success(), "an unreachable NATS is an error");
}

/// `mypage rebuild` applies what the stream holds to an emptied read model and says how
/// much; an unknown provider is refused by name.
#[tokio::test]
async fn mypage_rebuild_reports_the_events_it_applied() {
    use rentacar_events::{Event, Payload, nats_server::NatsServer, stream};
    use rentacar_proto::{common::Money, events::CarRegistered};

    let store = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&NatsServer::find_binary().expect("nats-server"), 0, store.path())
        .await
        .unwrap();
    let rebuild = || {
        Command::new(BIN)
            .args(["mypage", "rebuild"])
            .env("RENTACAR_NATS_URL", nats.url())
            .env("RENTACAR_DATA_DIR", data.path())
            .output()
            .unwrap()
    };
    let output = rebuild();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "mypage: read model rebuilt from 0 events"
    );

    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    stream::ensure(&js, 1).await.unwrap();
    for number in ["1111", "2222"] {
        let car = CarRegistered {
            car_number: number.into(),
            model: "Corolla".into(),
            daily_price: Some(Money {
                currency_code: "JPY".into(),
                amount_minor: 5000,
            }),
        };
        let event = Event::new("fleet", number, Payload::CarRegistered(car));
        js.publish(event.subject(), event.encode().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let output = rebuild();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "mypage: read model rebuilt from 2 events"
        );
    }

    let output = Command::new(BIN)
        .args(["mypage", "rebuild"])
        .env("RENTACAR_MYPAGE_STORE", "cassandra")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RENTACAR_MYPAGE_STORE"));
}

/// A log line written while a call is served carries the caller's trace id (from its
/// `traceparent`), as JSON in the cluster and as text without colour codes off a terminal.
#[tokio::test]
async fn log_lines_carry_the_callers_trace_id() {
    use rentacar_proto::{
        common::Money,
        fleet::{RegisterCarRequest, fleet_service_client::FleetServiceClient},
    };
    use tokio::io::AsyncReadExt;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    for format in ["json", "text"] {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = fleet_without_nats(data.path(), port)
            .env("RENTACAR_DRAIN_MS", "0")
            .env("RENTACAR_LOG_FORMAT", format)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_health(port, ServingStatus::Serving).await;

        let mut request = tonic::Request::new(RegisterCarRequest {
            car_number: "LOG-1".into(),
            model: "Corolla".into(),
            daily_price: Some(Money {
                currency_code: "JPY".into(),
                amount_minor: 5000,
            }),
        });
        request.metadata_mut().insert(
            "traceparent",
            format!("00-{TRACE_ID}-00f067aa0ba902b7-01").parse().unwrap(),
        );
        FleetServiceClient::new(channel(port).await.unwrap())
            .register_car(request)
            .await
            .unwrap();

        // Lines go to stderr unbuffered: what was logged is there when the process stops.
        child.kill().await.unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();

        assert!(
            !stderr.contains('\u{1b}'),
            "no colour codes off a terminal: {stderr}"
        );
        assert!(
            stderr.contains("authentication is OFF"),
            "turning authentication off is said at start: {stderr}"
        );
        let line = stderr
            .lines()
            .find(|line| line.contains("car registered"))
            .unwrap_or_else(|| panic!("no registration logged: {stderr}"));
        match format {
            "json" => {
                let fields: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(fields["trace_id"], TRACE_ID, "{line}");
                assert_eq!(fields["span_id"].as_str().map(str::len), Some(16), "{line}");
            }
            _ => assert!(
                line.starts_with(&format!("trace_id={TRACE_ID} span_id=")),
                "{line}"
            ),
        }
    }
}

/// The development issuer that `rentacar up` creates signs what `rentacar token` prints, and a
/// service configured as `up` configures it lets those tokens in, and only those.
#[tokio::test]
async fn tokens_from_rentacar_token_open_a_served_service() {
    use rentacar_proto::{
        common::Money,
        fleet::{RegisterCarRequest, fleet_service_client::FleetServiceClient},
    };

    let data = tempfile::tempdir().unwrap();
    let token = |args: &[&str]| {
        Command::new(BIN)
            .arg("token")
            .args(args)
            .env("RENTACAR_DATA_DIR", data.path())
            .output()
            .unwrap()
    };
    let before = token(&["--customer", "alice"]);
    assert!(!before.status.success());
    assert!(
        String::from_utf8_lossy(&before.stderr).contains("rentacar up"),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );

    let env =
        rentacar_runtime::config::Env::from_pairs([("RENTACAR_DATA_DIR", data.path().to_str().unwrap())]);
    let settings = rentacar::dev_auth::settings(&env, data.path()).unwrap();
    let port = free_port();
    let _fleet = fleet_without_nats(data.path(), port)
        .env_remove("RENTACAR_AUTH")
        .envs(settings)
        .env("RENTACAR_DRAIN_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_health(port, ServingStatus::Serving).await;

    let printed = |output: std::process::Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let manager = printed(token(&["--customer", "boss", "--manager", "--ttl", "5m"]));
    let customer = printed(token(&["--customer", "alice"]));
    let car = |token: Option<&str>| {
        let mut request = tonic::Request::new(RegisterCarRequest {
            car_number: "TOKEN-1".into(),
            model: "Corolla".into(),
            daily_price: Some(Money {
                currency_code: "JPY".into(),
                amount_minor: 5000,
            }),
        });
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        request
    };
    let mut fleet = FleetServiceClient::new(channel(port).await.unwrap());
    let refused = fleet.register_car(car(None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = fleet.register_car(car(Some(&customer))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let registered = fleet.register_car(car(Some(&manager))).await.unwrap();
    assert_eq!(registered.into_inner().car.unwrap().car_number, "TOKEN-1");
}
