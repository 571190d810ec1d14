//! Overload: a payment service that stops answering in time opens reservation's circuit
//! breaker, which refuses new reservations before writing anything and closes again once
//! payment recovers; a server beyond its limit of calls in flight sheds the rest with a
//! retry hint, while health checks still get through.
//!
//! The slowness is real: another connection holds the write lock of a service's SQLite
//! database, so the service's writes wait on it (up to SQLite's busy timeout of 5 s).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use rentacar_proto::{
    common::Money,
    fleet::{
        GetCarRequest, ListCarsRequest, RegisterCarRequest, RegisterCarResponse,
        fleet_service_client::FleetServiceClient,
    },
    reservation::{
        Reservation, ReservationStatus, ReserveRequest, reservation_service_client::ReservationServiceClient,
    },
};
use rentacar_runtime::db;
use rentacar_testkit::{Backend, Platform, Svc, day, eventually, register_car, reserve};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement};
use tokio::task::JoinHandle;
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// Calls beyond the in-flight limit of a server.
const OVERLOADED: &str = "OVERLOADED";
/// A reservation refused because reservation's circuit to payment is open.
const PAYMENT_PAUSED: &str = "PAYMENT_PAUSED";
/// A reservation whose payment call failed (here: missed its deadline).
const PAYMENT_UNAVAILABLE: &str = "PAYMENT_UNAVAILABLE";
/// RENTACAR_PAYMENT_BREAKER_OPEN_MS of the first test.
const BREAKER_OPEN: Duration = Duration::from_millis(1500);

/// The write lock of a service's SQLite database, held by a connection of the test's own,
/// as a long migration or a stuck batch job would hold it.
struct WriteLock {
    txn: DatabaseTransaction,
    _db: DatabaseConnection,
}

impl WriteLock {
    /// `BEGIN IMMEDIATE` on a dedicated connection: the service can still read, but each of
    /// its write transactions waits until [`WriteLock::release`].
    async fn take(url: &str) -> anyhow::Result<Self> {
        let conn = db::connect(url).await?;
        let txn = db::begin_write(&conn).await?;
        Ok(Self { txn, _db: conn })
    }

    async fn release(self) -> anyhow::Result<()> {
        self.txn.rollback().await?;
        Ok(())
    }
}

fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// UNAVAILABLE with the ErrorInfo `reason` and a RetryInfo; returns the retry delay.
fn assert_unavailable_with_hint(status: &Status, wanted: &str) -> Duration {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(status).as_deref(), Some(wanted), "{status:?}");
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo delay in {status:?}"))
}

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await?
        .expect("COUNT answers a row");
    Ok(row.try_get::<i64>("", "n")?)
}

/// Rows of reservation's table, however hidden: pending ones included.
async fn reservations_with_request_id(db: &DatabaseConnection, request_id: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM reservations WHERE request_id = ?",
            [request_id.into()],
        ))
        .await?
        .expect("COUNT answers a row");
    Ok(row.try_get::<i64>("", "n")?)
}

/// Sends `request` until it succeeds, as a client following the retry hints would. Every
/// failure meanwhile must be a retryable UNAVAILABLE.
async fn reserve_once_payment_answers(
    client: &ReservationServiceClient<Channel>,
    request: ReserveRequest,
) -> Reservation {
    eventually("a reservation to go through again", || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            match client.reserve(request).await {
                Ok(response) => Some(response.into_inner().reservation.expect("a reservation")),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    assert!(status.get_details_retry_info().is_some(), "{status:?}");
                    None
                }
            }
        }
    })
    .await
}

/// `n` reservations that payment cannot serve all fail with UNAVAILABLE; returns their
/// reasons in order.
async fn reserve_while_payment_fails(
    client: &mut ReservationServiceClient<Channel>,
    prefix: &str,
    dates: &mut impl Iterator<Item = (&'static str, &'static str)>,
    n: usize,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for i in 0..n {
        let (pickup, ret) = dates.next().expect("dates enough");
        let request = reserve(&format!("{prefix}-{i}"), "frank", "1111", pickup, ret);
        let status = client
            .reserve(request)
            .await
            .expect_err("payment cannot answer, so the reservation fails");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.get_details_retry_info().is_some(), "{status:?}");
        reasons.push(reason(&status).unwrap_or_default());
    }
    reasons
}

/// The open circuit refuses a reservation at once, with a retry hint no longer than the
/// open period, and without writing a row for it, pending or not.
async fn assert_paused_without_writing(
    client: &mut ReservationServiceClient<Channel>,
    reservations_db: &DatabaseConnection,
    request: ReserveRequest,
) -> anyhow::Result<()> {
    let before = count(reservations_db, "SELECT COUNT(*) AS n FROM reservations").await?;
    let status = client
        .reserve(request.clone())
        .await
        .expect_err("the circuit is open");
    let retry_after = assert_unavailable_with_hint(&status, PAYMENT_PAUSED);
    assert!(
        !retry_after.is_zero() && retry_after <= BREAKER_OPEN,
        "retry after {retry_after:?}, open for {BREAKER_OPEN:?}"
    );
    assert_eq!(
        reservations_with_request_id(reservations_db, &request.request_id).await?,
        0,
        "a refused reservation leaves no row"
    );
    let after = count(reservations_db, "SELECT COUNT(*) AS n FROM reservations").await?;
    assert_eq!(before, after, "a refused reservation writes nothing");
    Ok(())
}

/// Once nothing is pending any more, every approved charge belongs to exactly one live
/// reservation that records it, and every paid reservation has its approved charge.
/// Returns how many charges are approved.
async fn assert_ledgers_agree(
    reservations_db: &DatabaseConnection,
    payments_db: &DatabaseConnection,
) -> anyhow::Result<usize> {
    eventually("every pending reservation to be settled", || async {
        let pending = count(
            reservations_db,
            "SELECT COUNT(*) AS n FROM reservations WHERE status = 'PENDING_PAYMENT'",
        )
        .await
        .ok()?;
        (pending == 0).then_some(())
    })
    .await;

    let mut reservations: HashMap<String, (String, String)> = HashMap::new();
    let rows = reservations_db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT reservation_id, status, payment_id FROM reservations",
        ))
        .await?;
    let mut payment_ids_recorded = HashSet::new();
    for row in rows {
        let id: String = row.try_get("", "reservation_id")?;
        let status: String = row.try_get("", "status")?;
        let payment_id: String = row.try_get("", "payment_id")?;
        if !payment_id.is_empty() {
            assert!(
                payment_ids_recorded.insert(payment_id.clone()),
                "payment {payment_id} recorded by two reservations"
            );
        }
        reservations.insert(id, (status, payment_id));
    }

    let rows = payments_db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT reservation_id, payment_id, status FROM payments",
        ))
        .await?;
    let mut approved = HashMap::new();
    for row in rows {
        let reservation_id: String = row.try_get("", "reservation_id")?;
        let payment_id: String = row.try_get("", "payment_id")?;
        let status: String = row.try_get("", "status")?;
        if status == "APPROVED" {
            approved.insert(reservation_id, payment_id);
        }
    }
    for (reservation_id, payment_id) in &approved {
        let (status, recorded) = reservations.get(reservation_id).unwrap_or_else(|| {
            panic!("payment {payment_id} approved for unknown reservation {reservation_id}")
        });
        assert_eq!(
            recorded, payment_id,
            "reservation {reservation_id} records another payment"
        );
        assert!(
            ["PAID", "CONFIRMED", "CANCELED"].contains(&status.as_str()),
            "payment {payment_id} approved for a {status} reservation"
        );
    }
    for (reservation_id, (status, payment_id)) in &reservations {
        if status == "PAID" || status == "CONFIRMED" {
            assert_eq!(
                approved.get(reservation_id),
                Some(payment_id),
                "{status} reservation {reservation_id} without its approved payment"
            );
        }
    }
    Ok(approved.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_payment_service_opens_the_circuit_and_reservations_recover() -> anyhow::Result<()> {
    let mut platform = Platform::start(Backend::Sqlite).await?;
    platform
        .reconfigure(
            Svc::Reservation,
            &[
                ("RENTACAR_PAYMENT_TIMEOUT_MS", "300"),
                ("RENTACAR_PAYMENT_BREAKER_OPEN_MS", "1500"),
            ],
        )
        .await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    let reservations_db = db::connect(platform.database_url(Svc::Reservation)).await?;
    let mut client = platform.reservation().await;
    // Back-to-back rentals of one car, one per call: nothing competes for the car.
    let mut dates = (1..).step_by(2).map(|n| (day(n), day(n + 1)));

    // Phase 1: payment answers, but too late. Its writes wait on the lock past the deadline.
    let lock = WriteLock::take(platform.database_url(Svc::Payment)).await?;
    let reasons = reserve_while_payment_fails(&mut client, "slow", &mut dates, 12).await;
    assert_eq!(
        reasons[0], PAYMENT_UNAVAILABLE,
        "the first calls reach payment and miss the deadline: {reasons:?}"
    );
    assert!(
        count(
            &reservations_db,
            "SELECT COUNT(*) AS n FROM reservations WHERE status = 'PENDING_PAYMENT'"
        )
        .await?
            > 0,
        "calls that reached payment left pending reservations to settle"
    );
    let (pickup, ret) = dates.next().expect("dates enough");
    assert_paused_without_writing(
        &mut client,
        &reservations_db,
        reserve("while-slow-circuit-open", "frank", "1111", pickup, ret),
    )
    .await?;

    // Payment is fast again: after the open period a probe call closes the circuit.
    lock.release().await?;
    let (pickup, ret) = dates.next().expect("dates enough");
    let decided = reserve("after-slowness", "frank", "1111", pickup, ret);
    let recovered = reserve_once_payment_answers(&client, decided.clone()).await;
    assert!(
        matches!(
            recovered.status(),
            ReservationStatus::Paid | ReservationStatus::Confirmed
        ),
        "{recovered:?}"
    );

    // Phase 2: payment is down; calls fail at once, and the circuit opens again.
    platform.stop_service(Svc::Payment).await?;
    let reasons = reserve_while_payment_fails(&mut client, "down", &mut dates, 12).await;
    assert!(
        reasons
            .iter()
            .all(|r| r == PAYMENT_UNAVAILABLE || r == PAYMENT_PAUSED),
        "{reasons:?}"
    );
    let (pickup, ret) = dates.next().expect("dates enough");
    assert_paused_without_writing(
        &mut client,
        &reservations_db,
        reserve("while-down-circuit-open", "frank", "1111", pickup, ret),
    )
    .await?;
    // A retry of a call already decided is answered all the same: it needs no payment.
    let retried = client.reserve(decided).await?.into_inner().reservation;
    assert_eq!(
        retried.map(|r| r.reservation_id),
        Some(recovered.reservation_id.clone()),
        "the retry returns the first result while the circuit is open"
    );

    platform.start_service(Svc::Payment).await?;
    let (pickup, ret) = dates.next().expect("dates enough");
    let recovered =
        reserve_once_payment_answers(&client, reserve("after-restart", "frank", "1111", pickup, ret)).await;
    assert!(
        matches!(
            recovered.status(),
            ReservationStatus::Paid | ReservationStatus::Confirmed
        ),
        "{recovered:?}"
    );

    // Whatever was left pending is settled: nothing charged without its reservation.
    let payments_db = db::connect(platform.database_url(Svc::Payment)).await?;
    let approved = assert_ledgers_agree(&reservations_db, &payments_db).await?;
    assert!(approved >= 2, "both recovered reservations are charged");

    reservations_db.close().await?;
    payments_db.close().await?;
    platform.shutdown().await
}

fn car(number: &str) -> RegisterCarRequest {
    RegisterCarRequest {
        car_number: number.into(),
        model: "Yaris".into(),
        daily_price: Some(Money {
            currency_code: "JPY".into(),
            amount_minor: 4000,
        }),
    }
}

/// Registers `number`, trying again as told while the call is shed.
fn register_in_background(
    mut fleet: FleetServiceClient<Channel>,
    number: &'static str,
) -> JoinHandle<Result<RegisterCarResponse, Status>> {
    tokio::spawn(async move {
        loop {
            match fleet.register_car(car(number)).await {
                Err(status) if reason(&status).as_deref() == Some(OVERLOADED) => {
                    let wait = assert_unavailable_with_hint(&status, OVERLOADED);
                    tokio::time::sleep(wait).await;
                }
                outcome => return outcome.map(|response| response.into_inner()),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_limit_are_shed_with_a_retry_hint_and_probes_still_pass() -> anyhow::Result<()> {
    let mut platform = Platform::start(Backend::Sqlite).await?;
    platform
        .reconfigure(Svc::Fleet, &[("RENTACAR_MAX_IN_FLIGHT_CALLS", "2")])
        .await?;
    let fleet = platform.fleet().await;

    // Two registrations stay in flight: their writes wait on the lock.
    let lock = WriteLock::take(platform.database_url(Svc::Fleet)).await?;
    let held = [
        register_in_background(fleet.clone(), "3001"),
        register_in_background(fleet.clone(), "3002"),
    ];
    // Both are in flight once a call that needs no database (one refused by validation)
    // is shed rather than answered.
    eventually("both registrations in flight", || {
        let mut fleet = fleet.clone();
        async move {
            let request = GetCarRequest {
                car_number: String::new(),
            };
            match fleet.get_car(request).await {
                Err(status) if status.code() == Code::InvalidArgument => None,
                Err(status) if reason(&status).as_deref() == Some(OVERLOADED) => Some(()),
                other => panic!("a bad GetCar is refused or shed: {other:?}"),
            }
        }
    })
    .await;

    // A third call is shed at once, with a hint to try again.
    let status = fleet
        .clone()
        .list_cars(ListCarsRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect_err("a third call is beyond the limit");
    assert_unavailable_with_hint(&status, OVERLOADED);
    let status = fleet
        .clone()
        .register_car(car("3003"))
        .await
        .expect_err("a third call is beyond the limit");
    assert_unavailable_with_hint(&status, OVERLOADED);

    // Probes are never shed.
    let mut health = HealthClient::new(platform.channel(Svc::Fleet).await);
    for service in ["", "rentacar.fleet.v1.FleetService", "liveness"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(
            answer.status,
            ServingStatus::Serving as i32,
            "health of {service:?} on an overloaded server"
        );
    }
    assert!(
        held.iter().all(|call| !call.is_finished()),
        "the registrations are still waiting on the lock"
    );

    // The lock goes: the held calls complete, and new calls are answered again.
    lock.release().await?;
    for (call, number) in held.into_iter().zip(["3001", "3002"]) {
        let registered = call
            .await?
            .unwrap_or_else(|status| panic!("registering {number}: {status:?}"));
        assert_eq!(registered.car.expect("the car").car_number, number);
    }
    let cars = fleet
        .clone()
        .list_cars(ListCarsRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .cars;
    let numbers: Vec<_> = cars.iter().map(|c| c.car_number.as_str()).collect();
    assert_eq!(numbers, ["3001", "3002"], "the shed registration did nothing");
    fleet.clone().register_car(car("3003")).await?;

    platform.shutdown().await
}
