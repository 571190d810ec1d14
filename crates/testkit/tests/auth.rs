//! Who may do what, over the wire: every public call needs a valid token and is refused
//! with UNAUTHENTICATED saying why otherwise; a customer sees and changes only their own
//! reservations, and another's read as missing; only a manager changes the fleet; health
//! and reflection stay open; grpcurl and generated Python clients work with the same
//! `authorization` metadata.

use std::{path::PathBuf, process::Command, time::Duration};

use rentacar_proto::{
    fleet::{GetCarRequest, ListCarsRequest, RegisterCarRequest},
    mypage::ListMyReservationsRequest,
    payment::{GetPaymentRequest, PaymentStatus},
    reservation::{
        CancelReservationRequest, GetReservationRequest, ListReservationsRequest, Reservation,
        ReservationStatus, WatchReservationRequest,
    },
};
use rentacar_testkit::{
    Backend, Claims, EVENTUALLY, Issuer, Platform, Svc, TEST_ISSUER, day, eventually, register_car, reserve,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// `message` with `token` as its bearer token.
fn bearing<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

fn assert_unauthenticated(status: &Status, reason: &str, says: &str) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, reason, "{status:?}");
    assert!(
        status.message().contains(says),
        "{:?} does not say {says:?}",
        status.message()
    );
}

fn assert_code(result: Result<impl std::fmt::Debug, Status>, code: Code) {
    match result {
        Err(status) => assert_eq!(status.code(), code, "{status:?}"),
        Ok(answer) => panic!("expected {code:?}, got {answer:?}"),
    }
}

fn a_car(number: &str) -> RegisterCarRequest {
    RegisterCarRequest {
        car_number: number.into(),
        model: "Corolla".into(),
        daily_price: Some(rentacar_proto::common::Money {
            currency_code: "JPY".into(),
            amount_minor: 5000,
        }),
    }
}

/// Follows a reservation as `token`'s customer until it is confirmed.
async fn watch_until_confirmed(platform: &Platform, token: &str, id: &str) -> anyhow::Result<Reservation> {
    let request = WatchReservationRequest {
        reservation_id: id.into(),
    };
    let mut updates = platform
        .reservation()
        .await
        .watch_reservation(bearing(token, request))
        .await?
        .into_inner();
    let confirmed = async {
        while let Some(update) = updates.message().await? {
            let reservation = update.reservation.unwrap();
            if reservation.status() == ReservationStatus::Confirmed {
                return Ok(reservation);
            }
        }
        anyhow::bail!("the watch ended before the reservation was confirmed")
    };
    tokio::time::timeout(EVENTUALLY, confirmed).await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_who_their_tokens_say() -> anyhow::Result<()> {
    let platform = Platform::start_authenticated(Backend::Sqlite).await?;
    let issuer = platform.issuer();
    let alice = issuer.token("alice", false, TEN_MINUTES);
    let bob = issuer.token("bob", false, TEN_MINUTES);
    let manager = issuer.token("fleet-boss", true, TEN_MINUTES);

    // No token, or one that must not be trusted: refused before anything is done, saying why.
    let mut fleet = platform.fleet().await;
    let err = fleet.register_car(a_car("AUTH-0")).await.unwrap_err();
    assert_unauthenticated(&err, "TOKEN_MISSING", "authorization: Bearer");
    let now = jsonwebtoken_now();
    let claims = || issuer.claims("fleet-boss", true, TEN_MINUTES);
    let forger = Issuer::generate_with_id(TEST_ISSUER, issuer.key_id());
    let refused = [
        (forger.sign(&claims()), "TOKEN_SIGNATURE", "signature"),
        (
            issuer.sign(&Claims {
                iat: now - 7200,
                exp: now - 3600,
                ..claims()
            }),
            "TOKEN_EXPIRED",
            "expired",
        ),
        (
            issuer.sign(&Claims {
                aud: "billing".into(),
                ..claims()
            }),
            "TOKEN_AUDIENCE",
            "audience",
        ),
        (
            issuer.sign(&Claims {
                iss: "https://elsewhere.test/".into(),
                ..claims()
            }),
            "TOKEN_ISSUER",
            "issuer",
        ),
        ("not-a-token".to_owned(), "TOKEN_MALFORMED", "not a JWT"),
    ];
    for (token, reason, says) in &refused {
        let err = fleet
            .register_car(bearing(token, a_car("AUTH-0")))
            .await
            .unwrap_err();
        assert_unauthenticated(&err, reason, says);
    }
    let mut reservations = platform.reservation().await;
    let err = reservations
        .reserve(reserve("r-0", "", "AUTH-0", day(3), day(4)))
        .await
        .unwrap_err();
    assert_unauthenticated(&err, "TOKEN_MISSING", "no bearer token");
    let mut mypage = platform.mypage().await;
    let err = mypage
        .list_my_reservations(ListMyReservationsRequest::default())
        .await
        .unwrap_err();
    assert_unauthenticated(&err, "TOKEN_MISSING", "no bearer token");

    // A customer may not change the fleet; nothing of the refused calls was kept.
    let err = fleet
        .register_car(bearing(&alice, a_car("AUTH-0")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("manager"), "{err:?}");
    let cars = fleet
        .list_cars(bearing(&alice, ListCarsRequest::default()))
        .await?
        .into_inner();
    assert!(cars.cars.is_empty(), "{cars:?}");
    assert_eq!(platform.messages_on("rentacar.fleet.car_registered").await?, 0);

    // A manager registers a car; any customer may look at it.
    fleet.register_car(bearing(&manager, a_car("AUTH-1"))).await?;
    let car = fleet
        .get_car(bearing(
            &bob,
            GetCarRequest {
                car_number: "AUTH-1".into(),
            },
        ))
        .await?;
    assert_eq!(car.into_inner().car.unwrap().model, "Corolla");
    register_car(&platform, "AUTH-2", "Yaris", 4000).await?;

    // The whole saga with alice's token; the customer is the token's subject.
    let reserved = reservations
        .reserve(bearing(&alice, reserve("r-1", "", "AUTH-2", day(3), day(5))))
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(reserved.customer_id, "alice");
    assert_eq!(reserved.status(), ReservationStatus::Paid);
    let id = reserved.reservation_id.clone();
    watch_until_confirmed(&platform, &alice, &id).await?;
    let mine = eventually("alice's page to show her reservation", || {
        let mut mypage = mypage.clone();
        let alice = alice.clone();
        async move {
            let page = mypage
                .list_my_reservations(bearing(&alice, ListMyReservationsRequest::default()))
                .await
                .ok()?
                .into_inner();
            (page.reservations.len() == 1).then_some(page)
        }
    })
    .await;
    assert_eq!(mine.reservations[0].reservation_id, id);

    // Bob cannot read, watch, list or cancel it, nor act as alice: it reads as missing.
    let get = |token: &str| {
        bearing(
            token,
            GetReservationRequest {
                reservation_id: id.clone(),
            },
        )
    };
    assert_code(reservations.get_reservation(get(&bob)).await, Code::NotFound);
    let watch = WatchReservationRequest {
        reservation_id: id.clone(),
    };
    assert_code(
        reservations
            .watch_reservation(bearing(&bob, watch))
            .await
            .map(drop),
        Code::NotFound,
    );
    for named in ["", "alice"] {
        let cancel = CancelReservationRequest {
            reservation_id: id.clone(),
            customer_id: named.into(),
        };
        assert_code(
            reservations.cancel_reservation(bearing(&bob, cancel)).await,
            Code::NotFound,
        );
    }
    let alices = ListReservationsRequest {
        customer_id: "alice".into(),
        ..Default::default()
    };
    assert_code(
        reservations
            .list_reservations(bearing(&bob, alices.clone()))
            .await,
        Code::NotFound,
    );
    let own = reservations
        .list_reservations(bearing(&bob, ListReservationsRequest::default()))
        .await?
        .into_inner();
    assert!(own.reservations.is_empty(), "{own:?}");
    let alices_page = ListMyReservationsRequest {
        customer_id: "alice".into(),
        ..Default::default()
    };
    assert_code(
        mypage.list_my_reservations(bearing(&bob, alices_page)).await,
        Code::NotFound,
    );
    let err = reservations
        .reserve(bearing(&bob, reserve("r-2", "alice", "AUTH-2", day(7), day(8))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let payment = |token: &str| {
        bearing(
            token,
            GetPaymentRequest {
                reservation_id: id.clone(),
            },
        )
    };
    let mut payments = platform.payment().await;
    assert_code(payments.get_payment(payment(&bob)).await, Code::NotFound);
    let still = reservations.get_reservation(get(&alice)).await?.into_inner();
    assert_eq!(still.reservation.unwrap().status(), ReservationStatus::Confirmed);
    assert_eq!(
        reservations
            .list_reservations(bearing(&alice, alices))
            .await?
            .into_inner()
            .reservations
            .len(),
        1
    );

    // Alice cancels her own: reservation refunds with her token passed on to payment.
    let cancel = CancelReservationRequest {
        reservation_id: id.clone(),
        customer_id: String::new(),
    };
    let canceled = reservations
        .cancel_reservation(bearing(&alice, cancel))
        .await?
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(canceled.status(), ReservationStatus::Canceled);
    let refunded = payments.get_payment(payment(&alice)).await?.into_inner();
    assert_eq!(refunded.payment.unwrap().status(), PaymentStatus::Refunded);

    grpcurl_works_with_a_token(&platform, &alice, &id)?;
    python_clients_work_with_a_token(&platform, &alice, &id)?;
    platform.shutdown().await
}

/// `jsonwebtoken::get_current_timestamp`, without depending on it here.
fn jsonwebtoken_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// grpcurl, as the README uses it: the same metadata, over reflection, which needs no token.
fn grpcurl_works_with_a_token(platform: &Platform, token: &str, id: &str) -> anyhow::Result<()> {
    let grpcurl = grpcurl();
    let addr = platform.addr(Svc::Reservation).to_string();
    let listed = Command::new(&grpcurl)
        .args(["-plaintext", &addr, "list"])
        .output()?;
    let services = String::from_utf8_lossy(&listed.stdout);
    assert!(
        services.contains("rentacar.reservation.v1.ReservationService"),
        "{services} {}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // Every service listed resolves, the reflection services included (grpcurl speaks
    // v1alpha).
    for service in services.lines().filter(|line| !line.trim().is_empty()) {
        let described = Command::new(&grpcurl)
            .args(["-plaintext", &addr, "describe", service])
            .output()?;
        assert!(
            described.status.success(),
            "{service}: {}",
            String::from_utf8_lossy(&described.stderr)
        );
    }

    let body = format!(r#"{{"reservation_id":"{id}"}}"#);
    let method = "rentacar.reservation.v1.ReservationService/GetReservation";
    let header = format!("authorization: Bearer {token}");
    let answered = Command::new(&grpcurl)
        .args(["-plaintext", "-H", &header, "-d", &body, &addr, method])
        .output()?;
    let stdout = String::from_utf8_lossy(&answered.stdout);
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(stdout.contains("RESERVATION_STATUS_CANCELED"), "{stdout}");

    let refused = Command::new(&grpcurl)
        .args(["-plaintext", "-d", &body, &addr, method])
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    Ok(())
}

/// A Python client generated from the protos with grpcio-tools, passing the token as call
/// metadata the way grpcio's users do.
fn python_clients_work_with_a_token(platform: &Platform, token: &str, id: &str) -> anyhow::Result<()> {
    const CLIENT: &str = r#"
import sys
import grpc
sys.path.insert(0, sys.argv[1])
from rentacar.reservation.v1 import reservation_pb2, reservation_pb2_grpc

address, token, reservation_id = sys.argv[2:5]
stub = reservation_pb2_grpc.ReservationServiceStub(grpc.insecure_channel(address))
request = reservation_pb2.GetReservationRequest(reservation_id=reservation_id)
reply = stub.GetReservation(request, metadata=[("authorization", "Bearer " + token)])
print(reservation_pb2.ReservationStatus.Name(reply.reservation.status))
try:
    stub.GetReservation(request)
except grpc.RpcError as refused:
    print(refused.code().name)
"#;
    let python = rentacar_testkit::tool("python-grpc", "RENTACAR_PYTHON_GRPC");
    let out = tempfile::tempdir()?;
    let protos = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let generated = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&protos)
        .arg(format!("--python_out={}", out.path().display()))
        .arg(format!("--grpc_python_out={}", out.path().display()))
        .args([
            "rentacar/reservation/v1/reservation.proto",
            "rentacar/common/v1/money.proto",
        ])
        .output()?;
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );

    let script = out.path().join("client.py");
    std::fs::write(&script, CLIENT)?;
    let ran = Command::new(&python)
        .arg(&script)
        .arg(out.path())
        .arg(platform.addr(Svc::Reservation).to_string())
        .args([token, id])
        .output()?;
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let printed = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["RESERVATION_STATUS_CANCELED", "UNAUTHENTICATED"],
        "{printed}"
    );
    Ok(())
}

fn grpcurl() -> PathBuf {
    rentacar_testkit::tool("grpcurl", "RENTACAR_GRPCURL")
}
