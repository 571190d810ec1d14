//! Real processes, really killed: payment and reservation get SIGKILL after committing a
//! reservation whose events could not be published (NATS was down). After a restart the
//! events flow, the reservation is confirmed, and each event was published once in effect.

use std::{
    collections::HashMap,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use rentacar_events::nats_server::{NatsServer, free_port};
use rentacar_proto::{
    common::Money,
    fleet::{RegisterCarRequest, fleet_service_client::FleetServiceClient},
    reservation::{
        GetReservationRequest, ReservationStatus, ReserveRequest,
        reservation_service_client::ReservationServiceClient,
    },
};
use rentacar_testkit::day;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_rentacar");
const PATIENCE: Duration = Duration::from_secs(30);

struct Ports {
    nats: u16,
    payment: u16,
    fleet: u16,
    reservation: u16,
}

fn spawn(service: &str, port: u16, ports: &Ports, data: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", service])
        .env("RENTACAR_DATA_DIR", data)
        .env("RENTACAR_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RENTACAR_NATS_URL", format!("nats://127.0.0.1:{}", ports.nats))
        .env(
            "RENTACAR_PAYMENT_URL",
            format!("http://127.0.0.1:{}", ports.payment),
        )
        .env("RENTACAR_DRAIN_MS", "0")
        .env("RENTACAR_AUTH", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("rentacar starts")
}

fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy()
}

/// Retries `call` until it succeeds or [`PATIENCE`] runs out.
async fn until_ok<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return value,
            Err(_) if started.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("gave up: {status:?}"),
        }
    }
}

async fn messages_on(nats_url: &str, subject: &str) -> usize {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let stream = js.get_stream(rentacar_events::stream::STREAM_NAME).await.unwrap();
    let counts: HashMap<String, usize> = stream
        .info_with_subjects(subject)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    counts.get(subject).copied().unwrap_or(0)
}

#[tokio::test]
async fn sigkill_after_commit_before_publish_loses_nothing() {
    let nats_binary = NatsServer::find_binary().expect("nats-server");
    let store = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&nats_binary, 0, store.path()).await.unwrap();
    let ports = Ports {
        nats: nats.port(),
        payment: free_port().unwrap(),
        fleet: free_port().unwrap(),
        reservation: free_port().unwrap(),
    };

    let mut payment = spawn("payment", ports.payment, &ports, data.path());
    let _fleet = spawn("fleet", ports.fleet, &ports, data.path());
    let mut reservation = spawn("reservation", ports.reservation, &ports, data.path());

    let fleet_client = FleetServiceClient::new(channel(ports.fleet));
    until_ok(|| {
        let mut fleet = fleet_client.clone();
        async move {
            let car = RegisterCarRequest {
                car_number: "1111".into(),
                model: "Corolla".into(),
                daily_price: Some(Money {
                    currency_code: "JPY".into(),
                    amount_minor: 5000,
                }),
            };
            fleet.register_car(car).await
        }
    })
    .await;
    let reservations = ReservationServiceClient::new(channel(ports.reservation));
    // Wait until reservation's catalog has the car: a probe with a refused token changes
    // nothing and stops being NOT_FOUND once it does.
    until_ok(|| {
        let mut client = reservations.clone();
        async move {
            let probe = ReserveRequest {
                request_id: "probe".into(),
                customer_id: "probe".into(),
                car_number: "1111".into(),
                pickup_date: day(300).into(),
                return_date: day(301).into(),
                payment_method: "tok_probe_only".into(),
            };
            match client.reserve(probe).await {
                Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(()),
                Err(status) => Err(status),
                Ok(_) => panic!("a probe must not reserve"),
            }
        }
    })
    .await;

    nats.kill().await.unwrap();
    let request = ReserveRequest {
        request_id: "crash-1".into(),
        customer_id: "lee".into(),
        car_number: "1111".into(),
        pickup_date: day(3).into(),
        return_date: day(5).into(),
        payment_method: "tok_visa".into(),
    };
    let made = reservations
        .clone()
        .reserve(request)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(made.status(), ReservationStatus::Paid);

    // Both committed events they could not publish. Now they die without any cleanup.
    payment.kill().await.unwrap();
    reservation.kill().await.unwrap();
    nats = NatsServer::start(&nats_binary, ports.nats, store.path())
        .await
        .unwrap();
    let _payment = spawn("payment", ports.payment, &ports, data.path());
    let _reservation = spawn("reservation", ports.reservation, &ports, data.path());

    let confirmed = until_ok(|| {
        let mut client = reservations.clone();
        let id = made.reservation_id.clone();
        async move {
            let now = client
                .get_reservation(GetReservationRequest { reservation_id: id })
                .await?;
            let now = now.into_inner().reservation.unwrap();
            match now.status() {
                ReservationStatus::Paid => Err(tonic::Status::unavailable("not yet confirmed")),
                _ => Ok(now),
            }
        }
    })
    .await;
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
    assert_eq!(messages_on(&nats.url(), "rentacar.payment.approved").await, 1);
    assert_eq!(messages_on(&nats.url(), "rentacar.reservation.paid").await, 1);
    assert_eq!(messages_on(&nats.url(), "rentacar.fleet.car_booked").await, 1);
}
