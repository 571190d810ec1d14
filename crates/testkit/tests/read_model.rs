//! mypage's read model behaves the same on every provider: `sql` on SQLite and on
//! PostgreSQL, and `dynamodb` on a DynamoDB-compatible server (moto). Each behaviour below
//! runs three times, once per provider, over gRPC against the whole platform.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use rentacar_events::Event;
use rentacar_proto::{
    common::Money,
    events::{
        CarRegistered, ReservationCanceled, ReservationConfirmed, ReservationPaid, event_envelope::Payload,
    },
    mypage::{
        GetCarAvailabilityRequest, GetCarAvailabilityResponse, ListAvailableCarsRequest,
        ListMyReservationsRequest, MyReservation,
    },
    reservation::{CancelReservationRequest, Reservation, ReservationStatus},
};
use rentacar_testkit::{Backend, Platform, ReadModel, Svc, day, eventually, register_car, reserve};

/// A provider the suite runs against.
#[derive(Debug, Clone, Copy)]
enum Provider {
    Sqlite,
    Postgres,
    Dynamodb,
}

async fn platform(provider: Provider) -> anyhow::Result<Platform> {
    match provider {
        Provider::Sqlite => Platform::start(Backend::Sqlite).await,
        Provider::Postgres => Platform::start(Backend::Postgres).await,
        Provider::Dynamodb => Platform::start_with(Backend::Sqlite, ReadModel::Dynamodb).await,
    }
}

macro_rules! on_every_provider {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name(super::Provider::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name(super::Provider::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamodb() -> anyhow::Result<()> {
                super::$name(super::Provider::Dynamodb).await
            }
        }
    )*};
}

on_every_provider!(
    views_after_the_saga,
    converges_after_being_down,
    duplicate_and_out_of_order_delivery,
    availability_at_range_edges,
    paging_through_many_results,
    a_rebuild_produces_the_same_view,
);

async fn cancel(platform: &Platform, reservation: &Reservation) -> anyhow::Result<()> {
    let request = CancelReservationRequest {
        reservation_id: reservation.reservation_id.clone(),
        customer_id: reservation.customer_id.clone(),
    };
    platform.reservation().await.cancel_reservation(request).await?;
    Ok(())
}

/// Every row of `customer`'s reservations, following the pages of `page_size`.
async fn my_reservations(
    platform: &Platform,
    customer: &str,
    page_size: i32,
) -> anyhow::Result<Vec<MyReservation>> {
    let mut mypage = platform.mypage().await;
    let mut rows = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListMyReservationsRequest {
            customer_id: customer.into(),
            page_size,
            page_token,
        };
        let page = mypage.list_my_reservations(request).await?.into_inner();
        rows.extend(page.reservations);
        if page.next_page_token.is_empty() {
            return Ok(rows);
        }
        page_token = page.next_page_token;
    }
}

/// Waits until `customer`'s reservations read as `expected` (id → status), newest first.
async fn wait_for_statuses(
    platform: &Platform,
    customer: &str,
    expected: &[(&str, &str)],
) -> Vec<MyReservation> {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(id, status)| ((*id).to_owned(), (*status).to_owned()))
        .collect();
    eventually(
        &format!("{customer}'s reservations to read {expected:?}"),
        || async {
            let rows = my_reservations(platform, customer, 0).await.ok()?;
            let seen: Vec<(String, String)> = rows
                .iter()
                .map(|r| (r.reservation_id.clone(), r.status.clone()))
                .collect();
            (seen == expected).then_some(rows)
        },
    )
    .await
}

async fn availability(
    platform: &Platform,
    car: &str,
    pickup: &str,
    ret: &str,
) -> anyhow::Result<GetCarAvailabilityResponse> {
    let request = GetCarAvailabilityRequest {
        car_number: car.into(),
        pickup_date: pickup.into(),
        return_date: ret.into(),
    };
    Ok(platform
        .mypage()
        .await
        .get_car_availability(request)
        .await?
        .into_inner())
}

/// Every car free for the dates, following the pages of `page_size`.
async fn available_cars(
    platform: &Platform,
    pickup: &str,
    ret: &str,
    page_size: i32,
) -> anyhow::Result<Vec<String>> {
    let mut mypage = platform.mypage().await;
    let mut cars = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListAvailableCarsRequest {
            pickup_date: pickup.into(),
            return_date: ret.into(),
            page_size,
            page_token,
        };
        let page = mypage.list_available_cars(request).await?.into_inner();
        assert!(page.cars.len() <= page_size.max(1) as usize || page_size == 0);
        cars.extend(page.cars.into_iter().map(|c| c.car_number));
        if page.next_page_token.is_empty() {
            return Ok(cars);
        }
        page_token = page.next_page_token;
    }
}

/// After a confirmation, a rejection with its refund and a cancel, every view reads what
/// the saga did.
async fn views_after_the_saga(provider: Provider) -> anyhow::Result<()> {
    let platform = platform(provider).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;

    let confirmed = platform
        .reserve_and_settle(reserve("v-1", "vera", "1111", day(3), day(6)))
        .await?;
    assert_eq!(confirmed.status(), ReservationStatus::Confirmed);
    let rejected = platform
        .reserve_and_settle(reserve("v-2", "vera", "1111", day(5), day(7)))
        .await?;
    assert_eq!(rejected.status(), ReservationStatus::Rejected);
    let canceled = platform
        .reserve_and_settle(reserve("v-3", "vera", "2222", day(3), day(4)))
        .await?;
    cancel(&platform, &canceled).await?;

    let rows = wait_for_statuses(
        &platform,
        "vera",
        &[
            (&canceled.reservation_id, "CANCELED"),
            (&rejected.reservation_id, "REJECTED"),
            (&confirmed.reservation_id, "CONFIRMED"),
        ],
    )
    .await;
    let first = rows.last().unwrap();
    assert_eq!(
        (
            first.car_number.as_str(),
            first.pickup_date.as_str(),
            first.return_date.as_str()
        ),
        ("1111", day(3), day(6))
    );
    assert_eq!(
        first.price,
        Some(Money {
            currency_code: "JPY".into(),
            amount_minor: 15000
        })
    );
    assert!(rows.iter().all(|r| r.last_event_sequence > 0));

    let held = availability(&platform, "1111", day(4), day(5)).await?;
    assert!(!held.available);
    assert_eq!(
        held.conflicting_reservation_ids,
        std::slice::from_ref(&confirmed.reservation_id)
    );
    let freed = availability(&platform, "2222", day(3), day(4)).await?;
    assert!(freed.available, "a canceled reservation holds nothing: {freed:?}");
    assert!(freed.last_event_sequence >= rows[0].last_event_sequence);

    assert_eq!(available_cars(&platform, day(3), day(6), 0).await?, ["2222"]);
    assert!(my_reservations(&platform, "somebody-else", 0).await?.is_empty());

    let unknown = availability(&platform, "9999", day(3), day(4))
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()
        .unwrap();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    platform.shutdown().await
}

/// Events that flowed while mypage was down are all in its views once it is back.
async fn converges_after_being_down(provider: Provider) -> anyhow::Result<()> {
    let mut platform = platform(provider).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    // The first car is in the view before mypage goes down; all that follows happens while
    // it is down.
    platform.wait_for_consumer(rentacar_mypage::PROJECTION).await?;
    platform.stop_service(Svc::Mypage).await?;

    let first = platform
        .reserve_and_settle(reserve("d-1", "dana", "1111", day(3), day(4)))
        .await?;
    let second = platform
        .reserve_and_settle(reserve("d-2", "dana", "1111", day(7), day(9)))
        .await?;
    cancel(&platform, &first).await?;
    register_car(&platform, "3333", "Yaris", 4000).await?;

    platform.start_service(Svc::Mypage).await?;
    wait_for_statuses(
        &platform,
        "dana",
        &[
            (&second.reservation_id, "CONFIRMED"),
            (&first.reservation_id, "CANCELED"),
        ],
    )
    .await;
    assert!(availability(&platform, "1111", day(3), day(4)).await?.available);
    assert!(!availability(&platform, "1111", day(8), day(9)).await?.available);
    assert_eq!(available_cars(&platform, day(7), day(8), 0).await?, ["3333"]);
    platform.shutdown().await
}

/// Publishes `payload` as a new event, under a message id of its own so the stream keeps
/// every copy: to the read model each copy is a redelivery of the same event.
async fn publish(platform: &Platform, event: &Event, copy: &str) -> anyhow::Result<()> {
    let js = platform.jetstream().await?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{}-{copy}", event.id()).as_str());
    js.publish_with_headers(event.subject(), headers, event.encode().into())
        .await?
        .await?;
    Ok(())
}

/// Redelivered events change nothing, and events arriving out of order end in the state
/// the reservation really reached, never a step back.
async fn duplicate_and_out_of_order_delivery(provider: Provider) -> anyhow::Result<()> {
    let platform = platform(provider).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;

    let price = Money {
        currency_code: "JPY".into(),
        amount_minor: 10000,
    };
    let paid = |id: &str, pickup: &str, ret: &str| {
        Event::new(
            "reservation",
            id,
            Payload::ReservationPaid(ReservationPaid {
                reservation_id: id.into(),
                customer_id: "olga".into(),
                car_number: "1111".into(),
                pickup_date: pickup.into(),
                return_date: ret.into(),
                price: Some(price.clone()),
                payment_id: format!("pay-{id}"),
            }),
        )
    };
    let confirmed = |id: &str| {
        Event::new(
            "reservation",
            id,
            Payload::ReservationConfirmed(ReservationConfirmed {
                reservation_id: id.into(),
                customer_id: "olga".into(),
            }),
        )
    };
    let canceled = |id: &str| {
        Event::new(
            "reservation",
            id,
            Payload::ReservationCanceled(ReservationCanceled {
                reservation_id: id.into(),
                customer_id: "olga".into(),
                car_number: "1111".into(),
            }),
        )
    };

    // "late": its cancel overtakes its payment, and an old confirmation comes last.
    let late_paid = paid("late", day(43), day(45));
    publish(&platform, &canceled("late"), "a").await?;
    publish(&platform, &late_paid, "a").await?;
    publish(&platform, &late_paid, "b").await?;
    publish(&platform, &confirmed("late"), "a").await?;
    // "twice": every event of it arrives twice.
    let twice = [paid("twice", day(53), day(55)), confirmed("twice")];
    for event in &twice {
        publish(&platform, event, "a").await?;
        publish(&platform, event, "b").await?;
    }
    // A registration replayed after a newer one does not bring the old model back.
    let old = Event::new(
        "fleet",
        "1111",
        Payload::CarRegistered(CarRegistered {
            car_number: "4444".into(),
            model: "Old name".into(),
            daily_price: Some(price.clone()),
        }),
    );
    let new = Event::new(
        "fleet",
        "1111",
        Payload::CarRegistered(CarRegistered {
            car_number: "4444".into(),
            model: "New name".into(),
            daily_price: Some(price.clone()),
        }),
    );
    publish(&platform, &old, "a").await?;
    publish(&platform, &new, "a").await?;
    publish(&platform, &old, "b").await?;

    let rows = wait_for_statuses(&platform, "olga", &[("twice", "CONFIRMED"), ("late", "CANCELED")]).await;
    let late = &rows[1];
    assert_eq!(
        (
            late.pickup_date.as_str(),
            late.return_date.as_str(),
            late.price.as_ref()
        ),
        (day(43), day(45), Some(&price)),
        "the overtaken payment still filled in the details"
    );
    platform.wait_for_consumer(rentacar_mypage::PROJECTION).await?;
    assert_eq!(
        my_reservations(&platform, "olga", 0).await?,
        rows,
        "no copy changed anything"
    );

    assert!(availability(&platform, "1111", day(43), day(45)).await?.available);
    let twice = availability(&platform, "1111", day(54), day(55)).await?;
    assert_eq!(twice.conflicting_reservation_ids, ["twice"]);

    let mut mypage = platform.mypage().await;
    let cars = mypage
        .list_available_cars(ListAvailableCarsRequest {
            pickup_date: day(34).into(),
            return_date: day(35).into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .cars;
    let models: BTreeMap<_, _> = cars.into_iter().map(|c| (c.car_number, c.model)).collect();
    assert_eq!(models.get("4444").map(String::as_str), Some("New name"));
    platform.shutdown().await
}

/// Back-to-back rentals share no day: a car returned on a date can be picked up that day.
async fn availability_at_range_edges(provider: Provider) -> anyhow::Result<()> {
    let platform = platform(provider).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;
    let before = platform
        .reserve_and_settle(reserve("e-1", "erin", "1111", day(3), day(5)))
        .await?;
    let after = platform
        .reserve_and_settle(reserve("e-2", "erin", "1111", day(5), day(7)))
        .await?;
    assert_eq!(
        after.status(),
        ReservationStatus::Confirmed,
        "back to back is no clash"
    );
    wait_for_statuses(
        &platform,
        "erin",
        &[
            (&after.reservation_id, "CONFIRMED"),
            (&before.reservation_id, "CONFIRMED"),
        ],
    )
    .await;

    let cases: [(&str, &str, &[&String]); 6] = [
        (day(1), day(3), &[]),
        (day(2), day(4), &[&before.reservation_id]),
        (day(4), day(5), &[&before.reservation_id]),
        (day(5), day(6), &[&after.reservation_id]),
        (day(3), day(7), &[&before.reservation_id, &after.reservation_id]),
        (day(7), day(8), &[]),
    ];
    for (pickup, ret, holders) in cases {
        let answer = availability(&platform, "1111", pickup, ret).await?;
        let mut got = answer.conflicting_reservation_ids.clone();
        got.sort();
        let mut want: Vec<String> = holders.iter().map(|id| (*id).clone()).collect();
        want.sort();
        assert_eq!(got, want, "{pickup}..{ret}");
        assert_eq!(answer.available, want.is_empty(), "{pickup}..{ret}");
    }
    assert_eq!(available_cars(&platform, day(4), day(6), 0).await?, ["2222"]);
    assert_eq!(
        available_cars(&platform, day(7), day(10), 0).await?,
        ["1111", "2222"]
    );
    platform.shutdown().await
}

/// Pages cover every row once, in order, however small they are.
async fn paging_through_many_results(provider: Provider) -> anyhow::Result<()> {
    let platform = platform(provider).await?;
    let cars: Vec<String> = (10..22).map(|n| format!("{n}00")).collect();
    for car in &cars {
        register_car(&platform, car, "Corolla", 5000).await?;
    }
    // Seven reservations of the first seven cars, on the same dates.
    let mut ids = Vec::new();
    for car in &cars[..7] {
        let reservation = platform
            .reserve_and_settle(reserve(&format!("p-{car}"), "pia", car, day(12), day(14)))
            .await?;
        ids.push(reservation.reservation_id);
    }
    let newest_first: Vec<(&str, &str)> = ids.iter().rev().map(|id| (id.as_str(), "CONFIRMED")).collect();
    wait_for_statuses(&platform, "pia", &newest_first).await;

    for page_size in [1, 3, 7, 50] {
        let paged: Vec<String> = my_reservations(&platform, "pia", page_size)
            .await?
            .into_iter()
            .map(|r| r.reservation_id)
            .collect();
        let expected: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(paged, expected, "page size {page_size}");

        let free = available_cars(&platform, day(13), day(15), page_size).await?;
        assert_eq!(free, cars[7..], "page size {page_size}");
    }
    let all = available_cars(&platform, day(65), day(66), 5).await?;
    assert_eq!(all, cars);

    let bad = platform
        .mypage()
        .await
        .list_my_reservations(ListMyReservationsRequest {
            customer_id: "pia".into(),
            page_size: 2,
            page_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    platform.shutdown().await
}

/// What mypage shows, in full.
async fn snapshot(platform: &Platform, customers: &[&str]) -> anyhow::Result<String> {
    let mut views = String::new();
    for customer in customers {
        views += &format!(
            "{customer}: {:?}\n",
            my_reservations(platform, customer, 2).await?
        );
    }
    for car in ["1111", "2222"] {
        let answer = availability(platform, car, day(3), day(12)).await?;
        views += &format!("{car}: {answer:?}\n");
    }
    views += &format!("free: {:?}\n", available_cars(platform, day(3), day(5), 1).await?);
    Ok(views)
}

/// A rebuild from the stream, from nothing, gives back the same views.
async fn a_rebuild_produces_the_same_view(provider: Provider) -> anyhow::Result<()> {
    let mut platform = platform(provider).await?;
    register_car(&platform, "1111", "Corolla", 5000).await?;
    register_car(&platform, "2222", "Prius", 7000).await?;
    let kept = platform
        .reserve_and_settle(reserve("r-1", "rita", "1111", day(3), day(5)))
        .await?;
    let dropped = platform
        .reserve_and_settle(reserve("r-2", "rita", "2222", day(4), day(6)))
        .await?;
    cancel(&platform, &dropped).await?;
    let clash = platform
        .reserve_and_settle(reserve("r-3", "sam", "1111", day(4), day(7)))
        .await?;
    wait_for_statuses(
        &platform,
        "rita",
        &[
            (&dropped.reservation_id, "CANCELED"),
            (&kept.reservation_id, "CONFIRMED"),
        ],
    )
    .await;
    wait_for_statuses(&platform, "sam", &[(&clash.reservation_id, "REJECTED")]).await;
    let before = snapshot(&platform, &["rita", "sam"]).await?;

    platform.stop_service(Svc::Mypage).await?;
    let applied = rentacar_mypage::rebuild::rebuild(&platform.mypage_config()?).await?;
    let mut published = 0;
    for subject in rentacar_mypage::domain::SUBJECTS {
        published += platform.messages_on(subject).await?;
    }
    assert_eq!(applied, published, "every event on mypage's subjects was applied");

    platform.start_service(Svc::Mypage).await?;
    assert_eq!(snapshot(&platform, &["rita", "sam"]).await?, before);
    platform.shutdown().await
}

// === start-up checks of the DynamoDB table ===

mod table_checks {
    use rentacar_mypage::{DynamodbConfig, dynamodb::DynamodbViews, dynamodb::table};
    use rentacar_runtime::config::Env;
    use rentacar_testkit::{Moto, Svc, eventually};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    fn config(moto: &Moto, table: &str) -> DynamodbConfig {
        DynamodbConfig {
            table: table.to_owned(),
            endpoint: Some(moto.endpoint().to_owned()),
            create_table: false,
        }
    }

    fn unique_table() -> String {
        format!("mypage-{}", uuid::Uuid::new_v4().simple())
    }

    /// mypage alone on `config`'s table; NATS is not needed before the table is usable.
    async fn start_mypage(
        config: &DynamodbConfig,
    ) -> anyhow::Result<(
        HealthClient<tonic::transport::Channel>,
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )> {
        let env = Env::from_pairs([
            ("RENTACAR_MYPAGE_STORE", "dynamodb"),
            ("RENTACAR_MYPAGE_DYNAMODB_TABLE", config.table.as_str()),
            (
                "RENTACAR_MYPAGE_DYNAMODB_ENDPOINT",
                config.endpoint.as_deref().unwrap(),
            ),
            ("RENTACAR_NATS_URL", "nats://127.0.0.1:9"),
            ("RENTACAR_DRAIN_MS", "0"),
            ("RENTACAR_AUTH", "off"),
        ]);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", listener.local_addr()?))?
            .connect_lazy();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { Svc::Mypage.run(&env, listener, token).await });
        Ok((HealthClient::new(channel), stop, task))
    }

    async fn wait_for_health(health: &HealthClient<tonic::transport::Channel>, wanted: ServingStatus) {
        eventually(&format!("mypage to answer {wanted:?}"), || {
            let mut health = health.clone();
            async move {
                let status = health
                    .check(HealthCheckRequest::default())
                    .await
                    .ok()?
                    .into_inner()
                    .status;
                (status == wanted as i32).then_some(())
            }
        })
        .await
    }

    /// A missing table is named with what to do; mypage stays up and NOT_SERVING, and
    /// becomes SERVING once the table exists.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_table_keeps_mypage_not_serving_until_it_exists() -> anyhow::Result<()> {
        let moto = Moto::shared().await?;
        let config = config(moto, &unique_table());
        let client = DynamodbViews::connect(&config).await;

        let problem = table::check(client.client(), &config.table, false)
            .await
            .unwrap_err();
        assert!(
            matches!(problem, table::TableProblem::Missing { .. }),
            "{problem}"
        );
        let message = problem.to_string();
        assert!(
            message.contains(&config.table) && message.contains("RENTACAR_MYPAGE_DYNAMODB_CREATE_TABLE"),
            "{message}"
        );

        let (health, stop, task) = start_mypage(&config).await?;
        wait_for_health(&health, ServingStatus::NotServing).await;
        assert!(
            !task.is_finished(),
            "mypage keeps running while the table is missing"
        );

        table::check(client.client(), &config.table, true).await?;
        wait_for_health(&health, ServingStatus::Serving).await;
        stop.cancel();
        task.await??;
        Ok(())
    }

    /// Credentials the server does not accept (as with no Pod Identity association) are
    /// reported as denied access to the table, with what to do; mypage waits, NOT_SERVING.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn denied_access_is_reported_and_waited_out() -> anyhow::Result<()> {
        let strict = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).await?;
        let config = config(&strict, &unique_table());
        let client = DynamodbViews::connect(&config).await;

        let problem = table::check(client.client(), &config.table, true)
            .await
            .unwrap_err();
        assert!(matches!(problem, table::TableProblem::Denied { .. }), "{problem}");
        let message = problem.to_string();
        assert!(
            message.contains(&config.table) && message.contains("Pod Identity"),
            "{message}"
        );

        let (health, stop, task) = start_mypage(&config).await?;
        wait_for_health(&health, ServingStatus::NotServing).await;
        assert!(!task.is_finished(), "mypage keeps running while access is denied");
        stop.cancel();
        let _ = task.await?;
        Ok(())
    }

    /// A table keyed differently is refused with what differs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_with_other_keys_is_refused() -> anyhow::Result<()> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };

        let moto = Moto::shared().await?;
        let config = config(moto, &unique_table());
        let client = DynamodbViews::connect(&config).await;
        client
            .client()
            .create_table()
            .table_name(&config.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .send()
            .await?;

        let problem = table::check(client.client(), &config.table, true)
            .await
            .unwrap_err();
        let message = problem.to_string();
        assert!(
            matches!(problem, table::TableProblem::WrongSchema { .. }),
            "{message}"
        );
        assert!(
            message.contains("by_customer is missing") && message.contains("by_car is missing"),
            "{message}"
        );
        Ok(())
    }
}
