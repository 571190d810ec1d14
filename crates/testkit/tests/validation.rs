//! Bad input gets INVALID_ARGUMENT with every field violation, or the precise code, and
//! changes nothing. Lists page.

use rentacar_proto::{
    common::{Money, RefundCause},
    fleet::{GetCarRequest, ListCarsRequest, RegisterCarRequest},
    mypage::{GetCarAvailabilityRequest, ListAvailableCarsRequest, ListMyReservationsRequest},
    payment::{CancelPaymentRequest, PayRequest, PaymentStatus, Rental},
    reservation::ListReservationsRequest,
};
use rentacar_testkit::{Backend, Platform, day, eventually, register_car, reserve};
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad_request = status.get_details_bad_request().expect("BadRequest details");
    bad_request
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

fn jpy(amount_minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "JPY".into(),
        amount_minor,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_refuses_bad_cars_and_pages_its_list() -> anyhow::Result<()> {
    let platform = Platform::start(Backend::Sqlite).await?;
    let mut fleet = platform.fleet().await;

    let err = fleet
        .register_car(RegisterCarRequest {
            car_number: " ".into(),
            model: String::new(),
            daily_price: Some(Money {
                currency_code: "yen".into(),
                amount_minor: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "car_number",
            "model",
            "daily_price.currency_code",
            "daily_price.amount_minor"
        ]
    );
    let err = fleet
        .register_car(RegisterCarRequest {
            car_number: "BIG-1".into(),
            model: "m".repeat(rentacar_types::MAX_NAME_CHARS + 1),
            daily_price: jpy(rentacar_types::Money::MAX_DAILY_PRICE_MINOR + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["model", "daily_price.amount_minor"]);
    let oversized = fleet
        .register_car(RegisterCarRequest {
            car_number: "BIG-1".into(),
            model: "m".repeat(100 * 1024),
            daily_price: jpy(5000),
        })
        .await
        .unwrap_err();
    assert_eq!(
        oversized.code(),
        Code::OutOfRange,
        "a message over the size limit is refused before it is decoded"
    );
    let err = fleet
        .register_car(RegisterCarRequest {
            car_number: "1 1".into(),
            model: "x".into(),
            daily_price: None,
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["car_number", "daily_price"]);
    let none = fleet.list_cars(ListCarsRequest::default()).await?.into_inner();
    assert!(none.cars.is_empty(), "nothing was written");

    for number in ["A-5", "A-1", "A-4", "A-2", "A-3"] {
        fleet
            .register_car(RegisterCarRequest {
                car_number: number.into(),
                model: "Fit".into(),
                daily_price: jpy(4000),
            })
            .await?;
    }
    // Registering the same car again is a retry; a different car under its number is not.
    let same = RegisterCarRequest {
        car_number: "A-1".into(),
        model: "Fit".into(),
        daily_price: jpy(4000),
    };
    fleet.register_car(same).await?;
    let clash = RegisterCarRequest {
        car_number: "A-1".into(),
        model: "Civic".into(),
        daily_price: jpy(4000),
    };
    assert_eq!(
        fleet.register_car(clash).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = fleet
            .list_cars(ListCarsRequest {
                page_size: 2,
                page_token: token,
            })
            .await?
            .into_inner();
        assert!(page.cars.len() <= 2);
        seen.extend(page.cars.into_iter().map(|c| c.car_number));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["A-1", "A-2", "A-3", "A-4", "A-5"]);

    let err = fleet
        .list_cars(ListCarsRequest {
            page_size: -1,
            page_token: "nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["page_size", "page_token"]);
    let err = fleet
        .get_car(GetCarRequest {
            car_number: "Z-9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.get_details_resource_info().unwrap().resource_name, "Z-9");
    let car = fleet
        .get_car(GetCarRequest {
            car_number: "A-3".into(),
        })
        .await?
        .into_inner()
        .car
        .unwrap();
    assert_eq!(car.daily_price, jpy(4000));

    platform.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_refuses_bad_requests_and_stores_nothing() -> anyhow::Result<()> {
    let platform = Platform::start(Backend::Sqlite).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    let mut reservations = platform.reservation().await;

    let mut empty = reserve("r", "", "", "", "");
    empty.payment_method = String::new();
    let err = reservations.reserve(empty).await.unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "customer_id",
            "car_number",
            "pickup_date",
            "return_date",
            "payment_method"
        ]
    );

    let err = reservations
        .reserve(reserve("", "amy", "1111", day(3), day(4)))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        ["request_id"],
        "a Reserve without a request id is not safe to retry"
    );
    let err = reservations
        .reserve(reserve("r", "amy", "1111", day(5), day(3)))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["return_date"]);
    let err = reservations
        .reserve(reserve("r", "amy", "1111", "2026/12/01", "2026-02-30"))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["pickup_date", "return_date"]);

    let yesterday_but_one = (chrono::Utc::now().date_naive() - chrono::Days::new(2)).to_string();
    let err = reservations
        .reserve(reserve("r", "amy", "1111", &yesterday_but_one, day(4)))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["pickup_date"], "a rental cannot start in the past");
    let err = reservations
        .reserve(reserve("r", "amy", "1111", day(366), day(367)))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["pickup_date"], "nor beyond the booking horizon");
    let err = reservations
        .reserve(reserve("r\0", &"a".repeat(65), "11\n11", day(3), day(4)))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["request_id", "customer_id", "car_number"]);

    let mut unknown_token = reserve("r", "amy", "1111", day(3), day(4));
    unknown_token.payment_method = "tok_nonsense".into();
    let err = reservations.reserve(unknown_token).await.unwrap_err();
    assert_eq!(fields(&err), ["payment_method"]);

    let err = reservations
        .reserve(reserve("r", "amy", "9999", day(3), day(4)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.get_details_resource_info().unwrap().resource_type, "car");

    let listed = reservations
        .list_reservations(ListReservationsRequest {
            customer_id: "amy".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert!(
        listed.reservations.is_empty(),
        "no bad request left a reservation"
    );
    let err = reservations
        .list_reservations(ListReservationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["customer_id"]);

    // Paging through a customer's reservations, newest first.
    for (i, (pickup, ret)) in [(day(34), day(35)), (day(36), day(37)), (day(38), day(39))]
        .into_iter()
        .enumerate()
    {
        reservations
            .reserve(reserve(&format!("page-{i}"), "amy", "1111", pickup, ret))
            .await?;
    }
    let first = reservations
        .list_reservations(ListReservationsRequest {
            customer_id: "amy".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(first.reservations.len(), 2);
    let second = reservations
        .list_reservations(ListReservationsRequest {
            customer_id: "amy".into(),
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await?
        .into_inner();
    assert_eq!(second.reservations.len(), 1);
    assert!(second.next_page_token.is_empty());
    let mut all: Vec<_> = first
        .reservations
        .iter()
        .chain(&second.reservations)
        .map(|r| r.reservation_id.clone())
        .collect();
    all.dedup();
    assert_eq!(all.len(), 3);

    platform.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_charges_once_per_reservation() -> anyhow::Result<()> {
    let platform = Platform::start(Backend::Sqlite).await?;
    let mut payment = platform.payment().await;
    let pay = |reservation: &str, amount: i64, token: &str| PayRequest {
        reservation_id: reservation.into(),
        customer_id: "zoe".into(),
        amount: jpy(amount),
        payment_method: token.into(),
        rental: Some(Rental {
            car_number: "1111".into(),
            pickup_date: day(3).into(),
            return_date: day(4).into(),
        }),
    };

    let err = payment.pay(PayRequest::default()).await.unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "reservation_id",
            "customer_id",
            "amount",
            "payment_method",
            "rental"
        ]
    );
    let err = payment.pay(pay("r-0", 100, "tok_unknown")).await.unwrap_err();
    assert_eq!(fields(&err), ["payment_method"]);

    let first = payment
        .pay(pay("r-1", 100, "tok_visa"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    let again = payment
        .pay(pay("r-1", 100, "tok_visa"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(first.payment_id, again.payment_id, "one payment per reservation");
    assert_eq!(first.status(), PaymentStatus::Approved);
    let err = payment.pay(pay("r-1", 999, "tok_visa")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    let declined = payment
        .pay(pay("r-2", 100, "tok_chargeDeclined"))
        .await
        .unwrap_err();
    assert_eq!(declined.code(), Code::FailedPrecondition);
    assert_eq!(
        declined.get_details_error_info().unwrap().reason,
        "PAYMENT_DECLINED"
    );
    let still = payment
        .pay(pay("r-2", 100, "tok_chargeDeclined"))
        .await
        .unwrap_err();
    assert_eq!(
        still.code(),
        Code::FailedPrecondition,
        "a retried decline stays declined"
    );

    let refund = |id: &str| CancelPaymentRequest {
        reservation_id: id.into(),
        reason: "test".into(),
        cause: RefundCause::CustomerCanceled.into(),
    };
    let refunded = payment
        .cancel_payment(refund("r-1"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(refunded.status(), PaymentStatus::Refunded);
    let twice = payment
        .cancel_payment(refund("r-1"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(twice, refunded);
    assert_eq!(
        payment.cancel_payment(refund("r-2")).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        payment.cancel_payment(refund("r-404")).await.unwrap_err().code(),
        Code::NotFound
    );

    // These payments were made outside reservation: fleet rejects booking a rental of a
    // car it does not have, and reservation takes that and the refund as not its own business,
    // retrying nothing.
    eventually("fleet's answer to the approval", || async {
        (platform
            .messages_on("rentacar.fleet.booking_rejected")
            .await
            .ok()?
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(platform.messages_on("rentacar.payment.canceled").await?, 1);
    platform.wait_for_consumer("reservation-saga").await?;

    platform.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mypage_follows_the_events() -> anyhow::Result<()> {
    let platform = Platform::start(Backend::Sqlite).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;
    let booked = platform
        .reservation()
        .await
        .reserve(reserve("m-1", "mia", "1111", day(3), day(5)))
        .await?
        .into_inner()
        .reservation
        .unwrap();

    let mypage = platform.mypage().await;
    let mine = eventually("mypage to show mia's reservation", || {
        let mut mypage = mypage.clone();
        async move {
            let request = ListMyReservationsRequest {
                customer_id: "mia".into(),
                page_size: 0,
                page_token: String::new(),
            };
            let rows = mypage
                .list_my_reservations(request)
                .await
                .ok()?
                .into_inner()
                .reservations;
            (!rows.is_empty()).then_some(rows)
        }
    })
    .await;
    assert_eq!(mine[0].reservation_id, booked.reservation_id);
    assert!(
        ["PAID", "CONFIRMED"].contains(&mine[0].status.as_str()),
        "{}",
        mine[0].status
    );
    assert!(mine[0].last_event_sequence > 0);

    let mut mypage = platform.mypage().await;
    let availability = |pickup: &str, ret: &str| GetCarAvailabilityRequest {
        car_number: "1111".into(),
        pickup_date: pickup.into(),
        return_date: ret.into(),
    };
    let overlapping = mypage
        .get_car_availability(availability(day(4), day(6)))
        .await?
        .into_inner();
    assert!(!overlapping.available);
    assert_eq!(
        overlapping.conflicting_reservation_ids,
        vec![booked.reservation_id.clone()]
    );
    let back_to_back = mypage
        .get_car_availability(availability(day(5), day(6)))
        .await?
        .into_inner();
    assert!(back_to_back.available);

    let free = mypage
        .list_available_cars(ListAvailableCarsRequest {
            pickup_date: day(3).into(),
            return_date: day(4).into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let numbers: Vec<_> = free.cars.iter().map(|c| c.car_number.as_str()).collect();
    assert_eq!(numbers, ["2222"]);

    let err = mypage
        .get_car_availability(availability(day(7), day(3)))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["return_date"]);

    platform.shutdown().await
}

/// A page token that decodes to a control character (PostgreSQL cannot compare text with a
/// NUL in it) is refused as a bad token on PostgreSQL too, not failed as a database error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_holding_nul_are_refused_on_postgres() -> anyhow::Result<()> {
    let platform = Platform::start(Backend::Postgres).await?;
    let nul = "00";
    let err = platform
        .fleet()
        .await
        .list_cars(ListCarsRequest {
            page_size: 0,
            page_token: nul.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["page_token"]);
    let err = platform
        .reservation()
        .await
        .list_reservations(ListReservationsRequest {
            customer_id: "amy".into(),
            page_size: 0,
            page_token: "317c00".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["page_token"]);
    let err = platform
        .mypage()
        .await
        .list_available_cars(ListAvailableCarsRequest {
            pickup_date: day(3).into(),
            return_date: day(4).into(),
            page_size: 0,
            page_token: nul.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["page_token"]);
    platform.shutdown().await
}
