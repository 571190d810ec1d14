//! A harness that runs the rentacar platform inside a test.
//!
//! [`Platform::start`] starts a private `nats-server -js` on a free port with a temporary
//! store, gives every service a throwaway database (SQLite files in a temporary folder, or
//! uniquely named PostgreSQL databases that are dropped afterwards), serves each service on
//! port 0 and hands out generated gRPC clients. Services, and NATS itself, can be stopped,
//! killed and started again on the same port and data to test faults. mypage's read model
//! can live in its SQL database or in a DynamoDB table of its own on a shared [`Moto`].
//! [`envoy`] puts payment behind a real Envoy configured from the mesh's policy.

pub mod envoy;
pub mod moto;

pub use moto::Moto;

use std::{collections::HashMap, future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use async_nats::jetstream;
use futures::TryStreamExt;
use rentacar::Service;
pub use rentacar_auth::{Claims, Issuer};
use rentacar_events::nats_server::NatsServer;
use rentacar_proto::{
    fleet::fleet_service_client::FleetServiceClient,
    mypage::my_page_service_client::MyPageServiceClient,
    payment::payment_service_client::PaymentServiceClient,
    reservation::{
        Reservation, ReservationStatus, ReserveRequest, WatchReservationRequest,
        reservation_service_client::ReservationServiceClient,
    },
};
use rentacar_runtime::config::Env;
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use rentacar::Service as Svc;

/// The `iss` of the tokens an authenticated platform accepts.
pub const TEST_ISSUER: &str = "https://issuer.rentacar.test/";

/// The longest a test waits for an eventually consistent state before failing.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// Where the services keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where mypage keeps its read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModel {
    /// The service's SQL database, on the platform's backend.
    Sql,
    /// A table of its own on the shared moto server.
    Dynamodb,
}

/// A service running as a task of the test process.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

pub struct Platform {
    nats: NatsServer,
    nats_store: TempDir,
    /// Holds the SQLite files; removed on drop.
    _data: TempDir,
    databases: HashMap<Service, String>,
    postgres: Option<PostgresDatabases>,
    addrs: HashMap<Service, SocketAddr>,
    running: HashMap<Service, Running>,
    /// Extra instances sharing a service's database, as replicas behind a Kubernetes Service.
    replicas: Vec<Running>,
    /// Settings only mypage gets: where its read model lives.
    mypage_env: Vec<(String, String)>,
    /// Settings a test gave a service on top of the platform's.
    overrides: HashMap<Service, Vec<(String, String)>>,
    /// Signs the tokens callers present, when the platform checks them.
    issuer: Option<Issuer>,
    /// Where the issuer's JWKS is.
    jwks: Option<std::path::PathBuf>,
}

impl Platform {
    /// Starts NATS and all four services.
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        Self::start_with(backend, ReadModel::Sql).await
    }

    /// Starts NATS and all four services, with mypage's read model in `read_model`.
    /// Authentication is off: requests act for whoever they name.
    pub async fn start_with(backend: Backend, read_model: ReadModel) -> anyhow::Result<Self> {
        Self::start_all(backend, read_model, false).await
    }

    /// Starts NATS and all four services, which verify every caller's token; tokens come
    /// from [`Platform::issuer`].
    pub async fn start_authenticated(backend: Backend) -> anyhow::Result<Self> {
        Self::start_all(backend, ReadModel::Sql, true).await
    }

    async fn start_all(backend: Backend, read_model: ReadModel, authenticated: bool) -> anyhow::Result<Self> {
        init_logging();
        let mypage_env = match read_model {
            ReadModel::Sql => Vec::new(),
            ReadModel::Dynamodb => {
                let moto = Moto::shared().await?;
                let table = format!("mypage-{}", uuid::Uuid::new_v4().simple());
                [
                    ("RENTACAR_MYPAGE_STORE", "dynamodb"),
                    ("RENTACAR_MYPAGE_DYNAMODB_TABLE", &table),
                    ("RENTACAR_MYPAGE_DYNAMODB_ENDPOINT", moto.endpoint()),
                    ("RENTACAR_MYPAGE_DYNAMODB_CREATE_TABLE", "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
            }
        };
        let binary = NatsServer::find_binary()
            .context("nats-server not found: run `cargo xtask test`, which installs it into .tools/")?;
        let nats_store = tempfile::tempdir()?;
        let nats = NatsServer::start(&binary, 0, nats_store.path()).await?;
        let data = tempfile::tempdir()?;

        let (databases, postgres) = match backend {
            Backend::Sqlite => {
                let urls = Service::ALL
                    .into_iter()
                    .map(|s| {
                        (
                            s,
                            format!("sqlite://{}/{}.db?mode=rwc", data.path().display(), s.name()),
                        )
                    })
                    .collect();
                (urls, None)
            }
            Backend::Postgres => {
                let pg = PostgresDatabases::create().await?;
                (pg.urls.clone(), Some(pg))
            }
        };

        let (issuer, jwks) = if authenticated {
            let issuer = Issuer::generate(TEST_ISSUER);
            let jwks = data.path().join("jwks.json");
            issuer.write_jwks(&jwks)?;
            (Some(issuer), Some(jwks))
        } else {
            (None, None)
        };
        let mut platform = Self {
            issuer,
            jwks,
            nats,
            nats_store,
            _data: data,
            databases,
            postgres,
            addrs: HashMap::new(),
            running: HashMap::new(),
            replicas: Vec::new(),
            mypage_env,
            overrides: HashMap::new(),
        };
        // Payment first: reservation is configured with its address.
        for service in [
            Service::Payment,
            Service::Fleet,
            Service::Reservation,
            Service::Mypage,
        ] {
            platform.start_service(service).await?;
        }
        Ok(platform)
    }

    /// Starts (or restarts) `service` on its previous port and database.
    pub async fn start_service(&mut self, service: Service) -> anyhow::Result<()> {
        let bind = self
            .addrs
            .get(&service)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        self.addrs.insert(service, listener.local_addr()?);
        let running = self.spawn(service, listener);
        self.running.insert(service, running);
        self.wait_until_serving(self.addr(service)).await;
        Ok(())
    }

    /// Starts another instance of `service` on its own port, sharing its database and its
    /// durable consumers with the first. Stopped by [`Platform::shutdown`].
    pub async fn start_replica(&mut self, service: Service) -> anyhow::Result<SocketAddr> {
        self.start_replica_with(service, &[]).await
    }

    /// Like [`Platform::start_replica`], with `settings` on top of the service's (another
    /// route to the same database, say).
    pub async fn start_replica_with(
        &mut self,
        service: Service,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mut env = self.env(service);
        for (name, value) in settings {
            env = env.with(*name, *value);
        }
        let running = Self::spawn_with(service, listener, env);
        self.replicas.push(running);
        self.wait_until_serving(addr).await;
        Ok(addr)
    }

    /// The settings `service` runs with on this platform.
    pub fn env(&self, service: Service) -> Env {
        let mut env = Env::from_pairs([
            ("RENTACAR_DATABASE_URL", self.databases[&service].clone()),
            ("RENTACAR_NATS_URL", self.nats.url()),
            ("RENTACAR_DRAIN_MS", "0".to_owned()),
            ("RENTACAR_PAYMENT_TIMEOUT_MS", "2000".to_owned()),
        ]);
        if let Some(payment) = self.addrs.get(&Service::Payment) {
            env = env.with("RENTACAR_PAYMENT_URL", format!("http://{payment}"));
        }
        env = match &self.jwks {
            Some(jwks) => env
                .with("RENTACAR_AUTH_JWKS", jwks.display().to_string())
                .with("RENTACAR_AUTH_ISSUER", TEST_ISSUER),
            None => env.with("RENTACAR_AUTH", "off"),
        };
        if service == Service::Mypage {
            for (name, value) in &self.mypage_env {
                env = env.with(name, value);
            }
        }
        for (name, value) in self.overrides.get(&service).into_iter().flatten() {
            env = env.with(name, value);
        }
        env
    }

    /// Restarts `service` (gracefully, on its port and data) with `settings` on top of the
    /// platform's, as a changed ConfigMap and a rollout would.
    pub async fn reconfigure(&mut self, service: Service, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        self.overrides.insert(
            service,
            settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        );
        self.stop_service(service).await?;
        self.start_service(service).await
    }

    /// The database `service` (and its replicas) use.
    pub fn database_url(&self, service: Service) -> &str {
        &self.databases[&service]
    }

    /// mypage's configuration on this platform, as `rentacar mypage rebuild` would read it.
    pub fn mypage_config(&self) -> anyhow::Result<rentacar_mypage::Config> {
        Ok(rentacar_mypage::Config::from_env(&self.env(Service::Mypage))?)
    }

    fn spawn(&self, service: Service, listener: TcpListener) -> Running {
        Self::spawn_with(service, listener, self.env(service))
    }

    fn spawn_with(service: Service, listener: TcpListener, env: Env) -> Running {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { service.run(&env, listener, token).await });
        Running { stop, task }
    }

    /// Stops `service` gracefully: drain, flush its outbox, exit.
    pub async fn stop_service(&mut self, service: Service) -> anyhow::Result<()> {
        if let Some(running) = self.running.remove(&service) {
            running.stop.cancel();
            running.task.await??;
        }
        Ok(())
    }

    /// Stops `service` at once, as a crash or SIGKILL would: nothing after this instant runs.
    pub async fn kill_service(&mut self, service: Service) {
        if let Some(running) = self.running.remove(&service) {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Kills the NATS server; services keep running and keep reconnecting.
    pub async fn stop_nats(&mut self) -> anyhow::Result<()> {
        self.nats.kill().await?;
        Ok(())
    }

    /// Starts NATS again on the same port with the same JetStream store.
    pub async fn start_nats(&mut self) -> anyhow::Result<()> {
        let binary = NatsServer::find_binary().context("nats-server not found")?;
        self.nats = NatsServer::start(&binary, self.nats.port(), self.nats_store.path()).await?;
        Ok(())
    }

    /// The issuer whose tokens the platform accepts, if it checks tokens.
    pub fn issuer(&self) -> &Issuer {
        self.issuer
            .as_ref()
            .expect("the platform was started with Platform::start_authenticated")
    }

    /// `message` as `customer` sends it: with a token of theirs when the platform checks
    /// tokens.
    pub fn as_customer<T>(&self, customer: &str, message: T) -> tonic::Request<T> {
        self.signed(customer, false, message)
    }

    /// `message` as a manager of the fleet sends it.
    pub fn as_manager<T>(&self, message: T) -> tonic::Request<T> {
        self.signed("fleet-manager", true, message)
    }

    fn signed<T>(&self, customer: &str, manager: bool, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(issuer) = &self.issuer {
            let token = issuer.token(customer, manager, Duration::from_secs(600));
            let value = format!("Bearer {token}").parse().expect("a token is ASCII");
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    pub fn addr(&self, service: Service) -> SocketAddr {
        self.addrs[&service]
    }

    pub async fn channel(&self, service: Service) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr(service)))
            .expect("valid uri")
            .connect_lazy()
    }

    pub async fn fleet(&self) -> FleetServiceClient<Channel> {
        FleetServiceClient::new(self.channel(Service::Fleet).await)
    }

    pub async fn payment(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel(Service::Payment).await)
    }

    pub async fn reservation(&self) -> ReservationServiceClient<Channel> {
        ReservationServiceClient::new(self.channel(Service::Reservation).await)
    }

    pub async fn mypage(&self) -> MyPageServiceClient<Channel> {
        MyPageServiceClient::new(self.channel(Service::Mypage).await)
    }

    /// A JetStream context on the platform's NATS, to look at what was published.
    pub async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(async_nats::connect(self.nats.url()).await?))
    }

    /// How many messages the event stream holds on `subject`.
    pub async fn messages_on(&self, subject: &str) -> anyhow::Result<u64> {
        let js = self.jetstream().await?;
        let stream = js.get_stream(rentacar_events::stream::STREAM_NAME).await?;
        let counts: HashMap<String, usize> = stream.info_with_subjects(subject).await?.try_collect().await?;
        Ok(counts.get(subject).copied().unwrap_or(0) as u64)
    }

    /// Stops every service and removes every database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for replica in self.replicas.drain(..) {
            replica.stop.cancel();
            replica.task.await??;
        }
        for service in [
            Service::Reservation,
            Service::Mypage,
            Service::Fleet,
            Service::Payment,
        ] {
            self.stop_service(service).await?;
        }
        if let Some(pg) = self.postgres.take() {
            pg.drop_all().await?;
        }
        Ok(())
    }

    async fn wait_until_serving(&self, addr: SocketAddr) {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect_lazy();
        let health = tonic_health::pb::health_client::HealthClient::new(channel);
        eventually(&format!("{addr} to be SERVING"), || {
            let mut health = health.clone();
            async move {
                let request = tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                };
                let response = health.check(request).await.ok()?.into_inner();
                (response.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
            }
        })
        .await;
    }

    /// Follows `reservation_id` with `WatchReservation` until `done` holds for it.
    pub async fn watch_until(
        &self,
        reservation_id: &str,
        done: impl Fn(&Reservation) -> bool,
    ) -> anyhow::Result<Reservation> {
        let request = WatchReservationRequest {
            reservation_id: reservation_id.to_owned(),
        };
        let mut updates = self
            .reservation()
            .await
            .watch_reservation(request)
            .await?
            .into_inner();
        let wait = async {
            while let Some(update) = updates.message().await? {
                let reservation = update.reservation.context("update without a reservation")?;
                if done(&reservation) {
                    return Ok(reservation);
                }
            }
            anyhow::bail!("the watch ended before the reservation reached the wanted state")
        };
        tokio::time::timeout(EVENTUALLY, wait)
            .await
            .with_context(|| format!("reservation {reservation_id} did not reach the wanted state"))?
    }

    /// Reserves with `request` and waits until fleet's decision settles the reservation;
    /// returns it in its final state.
    pub async fn reserve_and_settle(&self, request: ReserveRequest) -> anyhow::Result<Reservation> {
        let paid = self
            .reservation()
            .await
            .reserve(request)
            .await?
            .into_inner()
            .reservation
            .context("Reserve answered without a reservation")?;
        self.watch_until(&paid.reservation_id, settled).await
    }

    /// Waits until `consumer` has acknowledged every message of its subjects that is in the
    /// stream now.
    pub async fn wait_for_consumer(&self, consumer: &str) -> anyhow::Result<()> {
        let js = self.jetstream().await?;
        let stream = js.get_stream(rentacar_events::stream::STREAM_NAME).await?;
        eventually(&format!("consumer {consumer} to catch up"), || {
            let stream = stream.clone();
            async move {
                let mut c = stream
                    .get_consumer::<jetstream::consumer::pull::Config>(consumer)
                    .await
                    .ok()?;
                let info = c.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;
        Ok(())
    }
}

/// Whether fleet has decided about `reservation`: CONFIRMED or REJECTED.
pub fn settled(reservation: &Reservation) -> bool {
    matches!(
        reservation.status(),
        ReservationStatus::Confirmed | ReservationStatus::Rejected
    )
}

/// A `Reserve` of `car` for `customer`, paid with the card that always approves.
pub fn reserve(
    request_id: &str,
    customer: &str,
    car: &str,
    pickup: &str,
    ret: &str,
) -> rentacar_proto::reservation::ReserveRequest {
    rentacar_proto::reservation::ReserveRequest {
        request_id: request_id.into(),
        customer_id: customer.into(),
        car_number: car.into(),
        pickup_date: pickup.into(),
        return_date: ret.into(),
        payment_method: "tok_visa".into(),
    }
}

/// The date `offset` days from today (UTC), as `YYYY-MM-DD`: rentals must start between
/// yesterday and the booking horizon, so tests pick their dates relative to today. Kept for
/// the life of the test process, so it can stand where a literal would.
pub fn day(offset: u64) -> &'static str {
    let date = chrono::Utc::now().date_naive() + chrono::Days::new(offset);
    Box::leak(date.to_string().into_boxed_str())
}

/// Registers a car and waits until reservation's catalog replica has it.
pub async fn register_car(
    platform: &Platform,
    car_number: &str,
    model: &str,
    daily_price: i64,
) -> anyhow::Result<()> {
    use rentacar_proto::{common::Money, fleet::RegisterCarRequest};
    platform
        .fleet()
        .await
        .register_car(platform.as_manager(RegisterCarRequest {
            car_number: car_number.to_owned(),
            model: model.to_owned(),
            daily_price: Some(Money {
                currency_code: "JPY".to_owned(),
                amount_minor: daily_price,
            }),
        }))
        .await?;
    wait_for_catalog(platform, car_number).await;
    Ok(())
}

/// Waits until reservation can price `car_number`. The probe is a `Reserve` with a payment
/// token payment refuses, which changes nothing: NOT_FOUND while the car is unknown,
/// INVALID_ARGUMENT once it is known.
pub async fn wait_for_catalog(platform: &Platform, car_number: &str) {
    let client = platform.reservation().await;
    eventually(&format!("car {car_number} in reservation's catalog"), || {
        let mut client = client.clone();
        async move {
            let probe = rentacar_proto::reservation::ReserveRequest {
                request_id: "catalog-probe".to_owned(),
                customer_id: "catalog-probe".to_owned(),
                car_number: car_number.to_owned(),
                pickup_date: day(300).to_owned(),
                return_date: day(301).to_owned(),
                payment_method: "tok_probe_only".to_owned(),
            };
            // A known car gets as far as payment, which refuses the token: nothing is kept.
            use tonic_types::StatusExt;
            let refused = client
                .reserve(platform.as_customer("catalog-probe", probe))
                .await
                .err()?;
            let fields = refused.get_details_bad_request()?.field_violations;
            fields.iter().any(|v| v.field == "payment_method").then_some(())
        }
    })
    .await
}

/// A tool from the variable `variable`, `.tools/bin` (`cargo xtask test` installs it there)
/// or PATH.
pub fn tool(name: &str, variable: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/bin")
        .join(name);
    if local.is_file() {
        return local;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run `cargo xtask test`, which installs it into .tools/"))
}

/// A TCP port that was free a moment ago, for a process that must be told its port.
pub fn free_port() -> u16 {
    rentacar_events::nats_server::free_port().expect("no free TCP port")
}

/// Waits until `check` returns `Some`, polling; fails the test after [`EVENTUALLY`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One PostgreSQL database per service, named uniquely for this test.
struct PostgresDatabases {
    admin_url: String,
    names: Vec<String>,
    urls: HashMap<Service, String>,
    dropped: bool,
}

impl PostgresDatabases {
    /// `RENTACAR_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
    /// must allow creating databases.
    async fn create() -> anyhow::Result<Self> {
        let admin_url = std::env::var("RENTACAR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = Database::connect(&admin_url)
            .await
            .with_context(|| format!("PostgreSQL at {admin_url} (set RENTACAR_TEST_POSTGRES_URL)"))?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url)
            .to_owned();
        let mut names = Vec::new();
        let mut urls = HashMap::new();
        for service in Service::ALL {
            let name = format!("rentacar_test_{}_{}", &run[..12], service.name());
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            urls.insert(service, format!("{base}/{name}"));
            names.push(name);
        }
        Ok(Self {
            admin_url,
            names,
            urls,
            dropped: false,
        })
    }

    async fn drop_all(mut self) -> anyhow::Result<()> {
        drop_databases(&self.admin_url, &self.names).await?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for PostgresDatabases {
    /// A failed test still removes its databases.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (url, names) = (self.admin_url.clone(), self.names.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_databases(&url, &names))
        })
        .join();
    }
}

async fn drop_databases(admin_url: &str, names: &[String]) -> anyhow::Result<()> {
    let admin = Database::connect(admin_url).await?;
    for name in names {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

fn init_logging() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Turns each `async fn name(Backend) -> anyhow::Result<()>` into two tests, `name::sqlite`
/// and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name($crate::Backend::Postgres).await
            }
        }
    )*};
}
