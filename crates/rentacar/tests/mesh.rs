//! Payment behind a real Envoy configured from mesh/istio (see `rentacar_testkit::envoy`):
//! outlier detection, the connection-pool limit, a rolling restart under load, and
//! reservation's calls to payment under the route's retries, over real gRPC.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use rentacar_proto::{
    common::Money,
    payment::{PayRequest, Rental, payment_service_client::PaymentServiceClient},
};
use rentacar_testkit::{
    day,
    envoy::{Envoy, PaymentPolicy, Route, wait_until},
    free_port,
};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tokio::{
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    task::JoinHandle,
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_rentacar");

/// A PostgreSQL database of payment's own, dropped at the end.
struct PaymentDatabase {
    admin: DatabaseConnection,
    name: String,
    url: String,
    port: u16,
}

impl PaymentDatabase {
    async fn create() -> Self {
        let admin_url = std::env::var("RENTACAR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = Database::connect(&admin_url).await.unwrap();
        let name = format!(
            "rentacar_test_{}_mesh",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        let port = url::Url::parse(&url).unwrap().port().unwrap_or(5432);
        Self {
            admin,
            name,
            url,
            port,
        }
    }

    /// The same database reached through `port` on this host.
    fn url_through(&self, port: u16) -> String {
        let mut url = url::Url::parse(&self.url).unwrap();
        url.set_port(Some(port)).unwrap();
        url.into()
    }

    async fn drop(self) {
        self.admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// A payment replica as its own process, as a pod runs it.
struct Replica {
    process: Child,
    addr: SocketAddr,
}

impl Replica {
    async fn start(database_url: &str, drain_ms: u64) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let process = Command::new(BIN)
            .args(["serve", "payment"])
            .env("RENTACAR_DATABASE_URL", database_url)
            .env("RENTACAR_LISTEN_ADDR", addr.to_string())
            // No NATS: the outbox keeps the events, and payment still serves.
            .env("RENTACAR_NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
            .env("RENTACAR_DRAIN_MS", drain_ms.to_string())
            .env("RENTACAR_AUTH", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let replica = Self { process, addr };
        replica.wait_for(ServingStatus::Serving).await;
        replica
    }

    async fn health(&self) -> Option<i32> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .ok()?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(response.into_inner().status)
    }

    /// Waits as a readiness probe would see it.
    async fn wait_for(&self, wanted: ServingStatus) {
        wait_until("payment's readiness", || async {
            self.health().await == Some(wanted as i32)
        })
        .await;
    }

    fn terminate(&self) {
        let pid = self.process.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// A TCP path from a replica to the database that the test can cut, as a lost network
/// would: every connection closes and new ones are refused.
struct DatabaseLink {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl DatabaseLink {
    async fn open(database_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let pipes = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", database_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                pipes.lock().unwrap().push(pipe);
            }
        });
        Self { port, tasks, accept }
    }

    fn cut(&self) {
        self.accept.abort();
        for pipe in self.tasks.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

fn pay_request(reservation_id: &str) -> PayRequest {
    PayRequest {
        reservation_id: reservation_id.to_owned(),
        customer_id: "mesh-customer".into(),
        amount: Some(Money {
            currency_code: "JPY".into(),
            amount_minor: 12_000,
        }),
        payment_method: "tok_visa".into(),
        rental: Some(Rental {
            car_number: "MESH-1".into(),
            pickup_date: day(310).into(),
            return_date: day(312).into(),
        }),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A replica whose database went away answers UNAVAILABLE; Envoy counts those answers as
/// 5xx (so they arrive as trailers-only responses), ejects the replica, and calls go to the
/// healthy one without needing a retry.
#[tokio::test]
async fn a_replica_answering_unavailable_is_ejected() {
    let policy = PaymentPolicy::from_mesh();
    let database = PaymentDatabase::create().await;
    let healthy = Replica::start(&database.url, 0).await;
    let link = DatabaseLink::open(database.port).await;
    let failing = Replica::start(&database.url_through(link.port), 0).await;
    let envoy = Envoy::start(&policy, Route::Mesh, &[healthy.addr, failing.addr]).await;
    let mut client = envoy.client().await;

    link.cut();
    let direct = Channel::from_shared(format!("http://{}", failing.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = PaymentServiceClient::new(direct)
        .pay(pay_request(&new_id()))
        .await;
    assert_eq!(
        answer.unwrap_err().code(),
        Code::Unavailable,
        "the failing replica's own answer"
    );

    // Round robin sends the failing replica every other call until it is ejected; the
    // VirtualService's retries carry those calls to the healthy one meanwhile.
    let mut calls = 0;
    while !envoy.ejected(failing.addr).await {
        client
            .pay(pay_request(&new_id()))
            .await
            .expect("retried onto the healthy replica");
        calls += 1;
        assert!(
            calls < 10 * policy.consecutive_5xx,
            "never ejected after {calls} calls"
        );
    }
    assert!(
        envoy
            .stat("cluster.payment.outlier_detection.ejections_enforced_consecutive_5xx")
            .await
            >= 1
    );

    let retries_before = envoy.stat("cluster.payment.upstream_rq_retry").await;
    for _ in 0..20 {
        client
            .pay(pay_request(&new_id()))
            .await
            .expect("served by the healthy replica");
    }
    assert_eq!(
        envoy.stat("cluster.payment.upstream_rq_retry").await,
        retries_before,
        "after the ejection no call reached the failing replica"
    );
    drop((envoy, healthy, failing));
    database.drop().await;
}

/// With a slow replica, calls beyond the DestinationRule's http2MaxRequests fail at once
/// with UNAVAILABLE instead of queuing; the ones admitted finish when it recovers.
#[tokio::test]
async fn calls_beyond_the_pool_limit_fail_at_once() {
    let policy = PaymentPolicy::from_mesh();
    let database = PaymentDatabase::create().await;
    let replica = Replica::start(&database.url, 0).await;
    let envoy = Envoy::start(&policy, Route::Plain, &[replica.addr]).await;
    let client = envoy.client().await;
    // Open Envoy's connection to the replica first: calls waiting for a connection count
    // against http1MaxPendingRequests, not http2MaxRequests.
    client.clone().pay(pay_request(&new_id())).await.unwrap();

    // Holding the payments table makes every Pay wait: a slow replica.
    let holder = Database::connect(&database.url).await.unwrap();
    let slow = holder.begin().await.unwrap();
    slow.execute_unprepared("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let admitted: Vec<_> = (0..policy.max_requests)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.pay(pay_request(&new_id())).await })
        })
        .collect();
    wait_until("every admitted call to be in flight", || async {
        envoy.stat("cluster.payment.upstream_rq_active").await == policy.max_requests
    })
    .await;

    let beyond = 8;
    for _ in 0..beyond {
        let answer = client.clone().pay(pay_request(&new_id())).await;
        assert_eq!(
            answer.unwrap_err().code(),
            Code::Unavailable,
            "a call beyond the limit"
        );
    }
    assert_eq!(
        envoy.stat("cluster.payment.upstream_rq_active_overflow").await,
        beyond
    );
    assert_eq!(
        envoy
            .stat("cluster.payment.circuit_breakers.default.rq_open")
            .await,
        1
    );
    assert_eq!(
        envoy.stat("cluster.payment.upstream_rq_active").await,
        policy.max_requests,
        "the refused calls were answered while the admitted ones still waited"
    );

    slow.commit().await.unwrap();
    for call in admitted {
        call.await
            .unwrap()
            .expect("an admitted call completes once the replica recovers");
    }
    drop((envoy, replica));
    database.drop().await;
}

/// A rolling restart under steady load: the new replica turns ready and joins, the old one
/// gets SIGTERM, turns NOT_SERVING, leaves the endpoints and drains. No call fails.
#[tokio::test]
async fn a_rolling_restart_under_load_loses_no_call() {
    let policy = PaymentPolicy::from_mesh();
    let database = PaymentDatabase::create().await;
    let old = Replica::start(&database.url, 3000).await;
    // No retries: the drain alone must keep every call.
    let mut envoy = Envoy::start(&policy, Route::Plain, &[old.addr]).await;
    let client = envoy.client().await;

    let stop = Arc::new(AtomicBool::new(false));
    let succeeded = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (mut client, stop, succeeded, failures) =
                (client.clone(), stop.clone(), succeeded.clone(), failures.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.pay(pay_request(&new_id())).await {
                        Ok(_) => succeeded.fetch_add(1, Ordering::Relaxed),
                        Err(status) => {
                            failures.lock().unwrap().push(status);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    let served_at_least = |n: usize| {
        let succeeded = succeeded.clone();
        async move {
            let target = succeeded.load(Ordering::Relaxed) + n;
            wait_until("calls to keep succeeding", || async {
                succeeded.load(Ordering::Relaxed) >= target
            })
            .await;
        }
    };
    served_at_least(20).await;

    let mut new = Replica::start(&database.url, 3000).await;
    envoy.set_endpoints(&[old.addr, new.addr]).await;
    served_at_least(20).await;

    let mut old = old;
    old.terminate();
    // The readiness probe fails (NOT_SERVING, or no answer once it has stopped).
    wait_until("the old replica to turn unready", || async {
        old.health().await != Some(ServingStatus::Serving as i32)
    })
    .await;
    envoy.set_endpoints(&[new.addr]).await;
    let exit = old.process.wait().await.unwrap();
    assert!(
        exit.success(),
        "the old replica drained and exited cleanly: {exit:?}"
    );
    served_at_least(20).await;

    stop.store(true, Ordering::Relaxed);
    for worker in load {
        worker.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "calls failed during the rollout: {failures:?}"
    );
    new.process.kill().await.unwrap();
    drop(envoy);
    database.drop().await;
}

/// Reservation calls payment through Envoy with the VirtualService's retries, against two
/// replicas of which one has lost its database. The calls that reach it fail or outlive
/// the per-try timeout and are retried on the other; every reservation is paid, charged
/// exactly once and confirmed.
#[tokio::test]
async fn retried_payments_charge_once() -> anyhow::Result<()> {
    use rentacar_proto::{payment::GetPaymentRequest, reservation::ReservationStatus};
    use rentacar_testkit::{Backend, Platform, Svc, register_car, reserve};

    const RESERVATIONS: usize = 6;
    let policy = PaymentPolicy::from_mesh();
    let mut platform = Platform::start(Backend::Postgres).await?;
    let mut through_link = url::Url::parse(platform.database_url(Svc::Payment))?;
    let link = DatabaseLink::open(through_link.port().unwrap_or(5432)).await;
    through_link.set_port(Some(link.port)).unwrap();
    let failing = platform
        .start_replica_with(Svc::Payment, &[("RENTACAR_DATABASE_URL", through_link.as_str())])
        .await?;
    let envoy = Envoy::start(&policy, Route::Mesh, &[platform.addr(Svc::Payment), failing]).await;
    // As the manifests set it: reservation's deadline on payment is the route's timeout.
    platform
        .reconfigure(
            Svc::Reservation,
            &[
                ("RENTACAR_PAYMENT_URL", &envoy.url()),
                ("RENTACAR_PAYMENT_TIMEOUT_MS", "3000"),
            ],
        )
        .await?;
    register_car(&platform, "MESH-1", "Corolla", 5000).await?;

    link.cut();
    let client = platform.reservation().await;
    let calls: Vec<_> = (0..RESERVATIONS)
        .map(|i| {
            let mut client = client.clone();
            let pickup = day(330 + 2 * i as u64).to_owned();
            let ret = day(331 + 2 * i as u64).to_owned();
            tokio::spawn(async move {
                client
                    .reserve(reserve(&new_id(), "mesh-customer", "MESH-1", &pickup, &ret))
                    .await
            })
        })
        .collect();

    let mut payment = platform.payment().await;
    for call in calls {
        let reservation = call
            .await?
            .expect("paid, after a retry where needed")
            .into_inner()
            .reservation
            .unwrap();
        let charged = payment
            .get_payment(GetPaymentRequest {
                reservation_id: reservation.reservation_id.clone(),
            })
            .await?
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(charged.amount, reservation.price, "charged what was reserved");
        let confirmed = platform
            .watch_until(&reservation.reservation_id, |r| {
                r.status() == ReservationStatus::Confirmed
            })
            .await?;
        assert_eq!(confirmed.payment_id, charged.payment_id);
    }
    assert!(
        envoy.stat("cluster.payment.upstream_rq_retry").await >= 1,
        "calls that reached the failing replica were retried"
    );
    assert_eq!(
        platform.messages_on("rentacar.payment.approved").await?,
        RESERVATIONS as u64,
        "one approval per reservation"
    );
    drop(envoy);
    platform.shutdown().await
}
