//! The outbox and inbox against a real nats-server and a real SQLite database.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::{HeaderMap, jetstream};
use futures::TryStreamExt;
use rentacar_events::{
    Consumer, Delivery, Event, Handler, HandlerError, Outbox, Payload, dead_letter, nats_server::NatsServer,
    stream,
};
use rentacar_proto::events::{CarRegistered, EventEnvelope};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;

struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        rentacar_events::migration::migrations()
    }
}

struct Fixture {
    _nats: NatsServer,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    db: DatabaseConnection,
    js: jetstream::Context,
}

async fn fixture() -> anyhow::Result<Fixture> {
    let store = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let nats = NatsServer::start(&NatsServer::find_binary().expect("nats-server"), 0, store.path()).await?;
    let url = format!("sqlite://{}/backbone.db?mode=rwc", data.path().display());
    let db = connect_and_migrate(&url).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    Ok(Fixture {
        _nats: nats,
        _dirs: (store, data),
        db,
        js,
    })
}

impl Fixture {
    /// Runs a consumer `name` of the fleet's events with `handler` until `stop` fires.
    fn consume<H: Handler>(
        &self,
        name: &str,
        handler: H,
        stop: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let consumer = Consumer::new(
            name,
            &["rentacar.fleet.>"],
            handler,
            self.db.clone(),
            self.js.clone(),
        );
        tokio::spawn(consumer.run(stop.clone()))
    }
}

async fn connect_and_migrate(url: &str) -> anyhow::Result<DatabaseConnection> {
    let db = sea_orm::Database::connect(url).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

fn car_registered(number: &str) -> Event {
    Event::new(
        "test",
        number,
        Payload::CarRegistered(CarRegistered {
            car_number: number.into(),
            model: "Fit".into(),
            daily_price: None,
        }),
    )
}

async fn count(js: &jetstream::Context, subject: &str) -> anyhow::Result<usize> {
    let stream = js.get_stream(stream::STREAM_NAME).await?;
    let counts: std::collections::HashMap<String, usize> =
        stream.info_with_subjects(subject).await?.try_collect().await?;
    Ok(counts.get(subject).copied().unwrap_or(0))
}

/// A relay that crashed after publishing but before marking its rows sent publishes them
/// again on restart; the stream's duplicate window keeps one copy.
#[tokio::test]
async fn a_resend_after_a_crash_is_kept_once() -> anyhow::Result<()> {
    let f = fixture().await?;
    let outbox = Outbox::new();
    outbox.store(&f.db, &car_registered("1111")).await?;
    outbox.store(&f.db, &car_registered("2222")).await?;

    let relay = outbox.relay(f.db.clone(), f.js.clone(), 1);
    assert_eq!(relay.publish_pending().await?, 2);
    assert_eq!(relay.publish_pending().await?, 0, "sent rows are not sent again");
    assert_eq!(rentacar_events::outbox::pending(&f.db).await?, 0);

    // The crash: the publish happened, the mark did not.
    f.db.execute_unprepared("UPDATE outbox SET sent_at_ms = NULL")
        .await?;
    let restarted = outbox.relay(f.db.clone(), f.js.clone(), 1);
    assert_eq!(restarted.publish_pending().await?, 2);
    assert_eq!(count(&f.js, "rentacar.fleet.car_registered").await?, 2);
    Ok(())
}

/// Counts what it applies; fails its first `failures` calls, and every call while `broken`.
#[derive(Clone, Default)]
struct Counting {
    applied: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    failures: usize,
    broken: Arc<AtomicBool>,
}

impl Handler for Counting {
    async fn handle(
        &self,
        _: &DatabaseTransaction,
        _: &EventEnvelope,
        _: &Delivery,
    ) -> Result<(), HandlerError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(HandlerError::Failed("not yet".into()));
        }
        if self.broken.load(Ordering::SeqCst) {
            return Err(HandlerError::Failed("the handler is broken".into()));
        }
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn publish_raw(js: &jetstream::Context, event: &Event, msg_id: &str) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(event.subject(), headers, event.encode().into())
        .await?
        .await?;
    Ok(())
}

async fn wait_until_drained(js: &jetstream::Context, consumer: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        let stream = js.get_stream(stream::STREAM_NAME).await?;
        if let Ok(mut c) = stream
            .get_consumer::<jetstream::consumer::pull::Config>(consumer)
            .await
        {
            let info = c.info().await?;
            if info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("consumer {consumer} did not drain")
}

/// The same event delivered twice (an ack lost on the way) is applied once.
#[tokio::test]
async fn a_redelivered_event_is_applied_once() -> anyhow::Result<()> {
    let f = fixture().await?;
    stream::ensure(&f.js, 1).await.map_err(|e| anyhow::anyhow!(e))?;
    let event = car_registered("1111");
    publish_raw(&f.js, &event, "first-delivery").await?;
    publish_raw(&f.js, &event, "second-delivery").await?;

    let handler = Counting::default();
    let stop = CancellationToken::new();
    let task = f.consume("test-once", handler.clone(), &stop);
    wait_until_drained(&f.js, "test-once").await?;
    stop.cancel();
    task.await?;
    assert_eq!(handler.applied.load(Ordering::SeqCst), 1);
    Ok(())
}

/// A handler that fails is retried by redelivery until it succeeds, then applied once.
#[tokio::test]
async fn a_failing_handler_gets_the_event_again() -> anyhow::Result<()> {
    let f = fixture().await?;
    stream::ensure(&f.js, 1).await.map_err(|e| anyhow::anyhow!(e))?;
    publish_raw(&f.js, &car_registered("1111"), "only").await?;

    let handler = Counting {
        failures: 2,
        ..Default::default()
    };
    let stop = CancellationToken::new();
    let task = f.consume("test-retry", handler.clone(), &stop);
    wait_until_drained(&f.js, "test-retry").await?;
    stop.cancel();
    task.await?;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    assert_eq!(handler.applied.load(Ordering::SeqCst), 1);
    Ok(())
}

/// Holds its first event until `release` fires, then applies it; applies the rest at once.
#[derive(Clone, Default)]
struct HoldsTheFirst {
    holding: Arc<AtomicBool>,
    release: CancellationToken,
    applied: Arc<AtomicUsize>,
}

impl Handler for HoldsTheFirst {
    async fn handle(
        &self,
        _: &DatabaseTransaction,
        _: &EventEnvelope,
        _: &Delivery,
    ) -> Result<(), HandlerError> {
        if !self.holding.swap(true, Ordering::SeqCst) {
            self.release.cancelled().await;
        }
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Deliveries the server counts as out and not yet acknowledged.
async fn unacknowledged(js: &jetstream::Context, consumer: &str) -> anyhow::Result<usize> {
    let stream = js.get_stream(stream::STREAM_NAME).await?;
    let mut consumer = stream
        .get_consumer::<jetstream::consumer::pull::Config>(consumer)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(consumer.info().await?.num_ack_pending)
}

/// Events that reached a consumer while it was busy, and that it will not apply because it
/// is stopping, go back to the server at once: the next instance gets them without waiting
/// out the 30 s ack wait, and each is applied once.
#[tokio::test]
async fn a_stopping_consumer_hands_back_what_it_received() -> anyhow::Result<()> {
    let f = fixture().await?;
    stream::ensure(&f.js, 1).await.map_err(|e| anyhow::anyhow!(e))?;
    publish_raw(&f.js, &car_registered("1111"), "held").await?;

    let stop = CancellationToken::new();
    let busy = HoldsTheFirst {
        release: stop.clone(),
        ..Default::default()
    };
    let task = f.consume("test-hand-back", busy.clone(), &stop);
    while !busy.holding.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    publish_raw(&f.js, &car_registered("2222"), "waiting-1").await?;
    publish_raw(&f.js, &car_registered("3333"), "waiting-2").await?;
    while unacknowledged(&f.js, "test-hand-back").await? < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The stop lets the held event finish; the two behind it are handed back.
    stop.cancel();
    task.await?;
    assert_eq!(busy.applied.load(Ordering::SeqCst), 1);
    let next = Counting::default();
    let stop = CancellationToken::new();
    let task = f.consume("test-hand-back", next.clone(), &stop);
    // Well inside the ack wait, after which the server would resend them anyway.
    let mut waited = Duration::ZERO;
    while next.applied.load(Ordering::SeqCst) < 2 {
        assert!(
            waited < Duration::from_secs(5),
            "the received events were not handed back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    wait_until_drained(&f.js, "test-hand-back").await?;
    stop.cancel();
    task.await?;
    assert_eq!(
        next.applied.load(Ordering::SeqCst),
        2,
        "the handed-back events, once each"
    );
    Ok(())
}

/// An event whose handler keeps failing is moved to the dead-letter stream with its
/// headers and the error, stops being redelivered, and is applied once when replayed after
/// the fault is gone.
#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_replayed_after_the_fix() -> anyhow::Result<()> {
    let f = fixture().await?;
    stream::ensure(&f.js, 1).await.map_err(|e| anyhow::anyhow!(e))?;
    let event = car_registered("1111");
    publish_raw(&f.js, &event, event.id()).await?;

    let handler = Counting::default();
    handler.broken.store(true, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let consumer = Consumer::new(
        "test-poison",
        &["rentacar.fleet.>"],
        handler.clone(),
        f.db.clone(),
        f.js.clone(),
    )
    .dead_letter_after(3);
    let task = tokio::spawn(consumer.run(stop.clone()));

    let mut letters = Vec::new();
    for _ in 0..600 {
        letters = dead_letter::list(&f.js, Some("test-poison"), 0, 10)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .letters;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(letters.len(), 1, "the poison event is kept");
    let letter = &letters[0];
    assert_eq!(letter.original_subject, "rentacar.fleet.car_registered");
    assert!(letter.error.contains("the handler is broken"), "{}", letter.error);
    assert_eq!(
        letter
            .headers
            .get(dead_letter::HEADER_ORIGINAL_MSG_ID)
            .map(|v| v.as_str().to_owned()),
        Some(event.id().to_owned())
    );
    assert_eq!(letter.payload, bytes::Bytes::from(event.encode()));
    wait_until_drained(&f.js, "test-poison").await?;
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        3,
        "no redelivery after the dead letter"
    );
    assert_eq!(handler.applied.load(Ordering::SeqCst), 0);

    handler.broken.store(false, Ordering::SeqCst);
    assert_eq!(
        dead_letter::replay(&f.js, Some("test-poison"))
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
        1
    );
    for _ in 0..600 {
        if handler.applied.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handler.applied.load(Ordering::SeqCst), 1);
    assert!(
        dead_letter::list(&f.js, None, 0, 10)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .letters
            .is_empty(),
        "replayed letters are removed"
    );
    stop.cancel();
    task.await?;
    Ok(())
}

/// An event the stream refuses for good (here: larger than the stream takes) is set aside
/// as a dead letter with the refusal, and the events stored after it are still published.
/// The letter is listed, page by page, and a replay leaves it alone: its payload is in the
/// outbox, not in the letter.
#[tokio::test]
async fn an_unpublishable_event_is_set_aside_and_the_rest_go_on() -> anyhow::Result<()> {
    let f = fixture().await?;
    let created = stream::ensure(&f.js, 1).await.map_err(|e| anyhow::anyhow!(e))?;
    let mut config = created.cached_info().config.clone();
    config.max_message_size = 600;
    f.js.update_stream(config).await?;

    let outbox = Outbox::new();
    let huge = Event::new(
        "test",
        "BIG",
        Payload::CarRegistered(CarRegistered {
            car_number: "BIG".into(),
            model: "x".repeat(2000),
            daily_price: None,
        }),
    );
    for event in [car_registered("1111"), huge, car_registered("2222")] {
        outbox.store(&f.db, &event).await?;
    }
    let relay = outbox.relay(f.db.clone(), f.js.clone(), 1).reporting_as("test");
    relay.publish_pending().await?;
    assert_eq!(count(&f.js, "rentacar.fleet.car_registered").await?, 2);
    assert_eq!(
        rentacar_events::outbox::pending(&f.db).await?,
        0,
        "nothing blocks the outbox"
    );

    let consumer = dead_letter::outbox_consumer("test");
    let page = dead_letter::list(&f.js, Some(&consumer), 0, 10)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(page.letters.len(), 1);
    let letter = &page.letters[0];
    assert_eq!(letter.original_subject, "rentacar.fleet.car_registered");
    assert!(letter.error.contains("maximum"), "{}", letter.error);
    assert!(letter.headers.get(dead_letter::HEADER_KEPT_IN_OUTBOX).is_some());
    assert_eq!(
        dead_letter::replay(&f.js, Some(&consumer))
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
        0
    );
    assert_eq!(count(&f.js, "rentacar.fleet.car_registered").await?, 2);

    // A second letter makes two pages of one.
    let other = Event::new(
        "test",
        "BIG2",
        Payload::CarRegistered(CarRegistered {
            car_number: "BIG2".into(),
            model: "y".repeat(2000),
            daily_price: None,
        }),
    );
    outbox.store(&f.db, &other).await?;
    relay.publish_pending().await?;
    let first = dead_letter::list(&f.js, None, 0, 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let after = first.next_after.expect("a second page");
    let second = dead_letter::list(&f.js, None, after, 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(first.letters.len() + second.letters.len(), 2);
    assert_ne!(first.letters[0].sequence, second.letters[0].sequence);
    assert_eq!(second.next_after, None);
    Ok(())
}

/// Sent outbox rows older than the duplicate window and inbox rows older than the stream
/// keeps events are deleted; newer ones, unsent ones and dead letters stay.
#[tokio::test]
async fn old_outbox_and_inbox_rows_are_pruned() -> anyhow::Result<()> {
    let f = fixture().await?;
    let outbox = Outbox::new();
    for number in ["1111", "2222"] {
        outbox.store(&f.db, &car_registered(number)).await?;
    }
    let relay = outbox.relay(f.db.clone(), f.js.clone(), 1);
    relay.publish_pending().await?;
    outbox.store(&f.db, &car_registered("3333")).await?;
    f.db.execute_unprepared(
        "INSERT INTO inbox (consumer, event_id, stream_sequence, received_at_ms) \
         VALUES ('c', 'old', 1, 0), ('c', 'new', 2, 9999999999999)",
    )
    .await?;

    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        rentacar_events::outbox::prune(&f.db, now).await?,
        (0, 1),
        "recent sends stay"
    );
    let later = now + stream::DUPLICATE_WINDOW.as_millis() as i64 + 1;
    assert_eq!(rentacar_events::outbox::prune(&f.db, later).await?, (2, 0));
    assert_eq!(
        rentacar_events::outbox::pending(&f.db).await?,
        1,
        "the unsent row stays"
    );
    let left =
        f.db.query_one_raw(sea_orm::Statement::from_string(
            f.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM inbox",
        ))
        .await?
        .expect("a count");
    assert_eq!(left.try_get::<i64>("", "n")?, 1);
    Ok(())
}
