//! What operators see: a reservation, a rejection with its refund and a cancel are each one
//! trace from the customer's call through payment, every event and every consumer, with
//! correct parent links; and the saga's metrics arrive with the values that happened. All
//! exported over OTLP to an in-process collector.
//!
//! One test per binary: the telemetry is the process's global subscriber.

use std::{collections::BTreeMap, time::Duration};

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use opentelemetry::trace::TraceContextExt;
use rentacar_proto::reservation::{
    CancelReservationRequest, ReservationStatus, reservation_service_client::ReservationServiceClient,
};
use rentacar_runtime::{
    config::Env,
    telemetry::{self, TelemetryConfig},
};
use rentacar_testkit::{Backend, Platform, Svc, day, register_car, reserve};
use tonic::transport::Channel;
use tonic_tracing_opentelemetry::middleware::client::{OtelGrpcLayer, OtelGrpcService};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Every span the collector has received so far.
async fn drain(collector: &mut FakeCollectorServer, into: &mut Vec<ExportedSpan>) {
    loop {
        let batch = collector.exported_spans(1, Duration::from_millis(500)).await;
        if batch.is_empty() {
            return;
        }
        into.extend(batch);
    }
}

/// The spans of one trace, by name and kind.
struct Trace<'a> {
    spans: Vec<&'a ExportedSpan>,
}

impl<'a> Trace<'a> {
    fn of(spans: &'a [ExportedSpan], trace_id: &str) -> Self {
        Self {
            spans: spans.iter().filter(|s| s.trace_id == trace_id).collect(),
        }
    }

    /// The one span named `name` of `kind` (`SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER`)
    /// whose attributes contain every `(key, fragment)`.
    fn find(&self, name: &str, kind: &str, with: &[(&str, &str)]) -> &'a ExportedSpan {
        let kind = format!("SPAN_KIND_{kind}");
        let found: Vec<_> = self
            .spans
            .iter()
            .filter(|s| s.name == name && s.kind == kind)
            .filter(|s| {
                with.iter()
                    .all(|(key, fragment)| s.attributes.get(*key).is_some_and(|v| v.contains(fragment)))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {kind} span {name} {with:?} in the trace; it has: {:#?}",
            self.names()
        );
        found[0]
    }

    /// The publishing of `subject` and its processing by consumer `group`, checking that
    /// the processing continues the publishing.
    fn hop(&self, subject: &str, group: &str) -> (&'a ExportedSpan, &'a ExportedSpan) {
        let published = self.find(&format!("{subject} publish"), "PRODUCER", &[]);
        let processed = self.find(
            &format!("{subject} process"),
            "CONSUMER",
            &[("messaging.consumer.group.name", group)],
        );
        assert_child(processed, published);
        (published, processed)
    }

    /// Whether `span` descends from `ancestor`.
    fn within(&self, span: &ExportedSpan, ancestor: &ExportedSpan) -> bool {
        let mut current = span;
        while let Some(parent) = self.spans.iter().find(|s| s.span_id == current.parent_span_id) {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            current = parent;
        }
        false
    }

    fn names(&self) -> BTreeMap<String, usize> {
        let mut names = BTreeMap::new();
        for span in &self.spans {
            *names.entry(format!("{} ({})", span.name, span.kind)).or_default() += 1;
        }
        names
    }
}

fn assert_child(child: &ExportedSpan, parent: &ExportedSpan) {
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "{} ({}) is a child of {} ({})",
        child.name, child.kind, parent.name, parent.kind
    );
}

/// The exporters' view of the platform: spans and metrics as the collector received them.
struct Exported {
    collector: FakeCollectorServer,
    telemetry: telemetry::Telemetry,
    spans: Vec<ExportedSpan>,
    /// The latest export of each metric, as JSON.
    metrics: BTreeMap<String, serde_json::Value>,
}

impl Exported {
    /// Flushes and collects until `done` holds for the spans received.
    async fn until(&mut self, what: &str, done: impl Fn(&[ExportedSpan]) -> bool) {
        let deadline = tokio::time::Instant::now() + rentacar_testkit::EVENTUALLY;
        loop {
            self.telemetry.flush().await;
            drain(&mut self.collector, &mut self.spans).await;
            loop {
                let batch = self
                    .collector
                    .exported_metrics(1, Duration::from_millis(200))
                    .await;
                if batch.is_empty() {
                    break;
                }
                for scope in batch {
                    for metric in scope.metrics {
                        self.metrics
                            .insert(metric.name.clone(), serde_json::to_value(&metric).unwrap());
                    }
                }
            }
            if done(&self.spans) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "never exported: {what}");
        }
    }

    /// The data points of metric `name` whose attributes contain every fragment.
    fn points(&self, name: &str, with: &[(&str, &str)]) -> Vec<serde_json::Value> {
        let metric = self
            .metrics
            .get(name)
            .unwrap_or_else(|| panic!("metric {name} was not exported; got {:?}", self.metrics.keys()));
        let data = metric["data"].as_object().expect("metric data");
        let (_, kind) = data.iter().next().expect("one kind of data");
        kind["data_points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|point| {
                with.iter().all(|(key, fragment)| {
                    point["attributes"][*key]
                        .as_str()
                        .is_some_and(|value| value.contains(fragment))
                })
            })
            .cloned()
            .collect()
    }

    /// The value of the one data point of a counter or gauge.
    fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let points = self.points(name, with);
        assert_eq!(points.len(), 1, "one point of {name} {with:?}: {points:?}");
        let value = &points[0]["value"];
        value["AsInt"]
            .as_f64()
            .or_else(|| value["AsDouble"].as_f64())
            .expect("a number")
    }
}

/// Whether a consumer span of `subject` by `group` is in the trace.
fn processed(spans: &[ExportedSpan], trace_id: &str, subject: &str, group: &str) -> bool {
    Trace::of(spans, trace_id).spans.iter().any(|s| {
        s.name == format!("{subject} process")
            && s.attributes
                .get("messaging.consumer.group.name")
                .is_some_and(|v| v.contains(group))
    })
}

/// A traced client of reservation, as a generated client with the OpenTelemetry layer.
fn customer_client(channel: Channel) -> ReservationServiceClient<OtelGrpcService<Channel>> {
    ReservationServiceClient::new(tower::ServiceBuilder::new().layer(OtelGrpcLayer).service(channel))
}

/// A new root span for a customer's action, and its trace id.
fn customer_action(name: &'static str) -> (tracing::Span, String) {
    let span = tracing::info_span!("customer action", otel.name = name);
    let trace_id = span.context().span().span_context().trace_id().to_string();
    (span, trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_is_one_trace_and_the_saga_is_measured() -> anyhow::Result<()> {
    let collector = FakeCollectorServer::start().await.expect("collector");
    let env = Env::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())]);
    let telemetry = telemetry::init(&TelemetryConfig::from_env(&env, "rentacar-test")?)?;
    let mut exported = Exported {
        collector,
        telemetry,
        spans: Vec::new(),
        metrics: BTreeMap::new(),
    };
    let platform = Platform::start(Backend::Sqlite).await?;
    register_car(&platform, "TRACE-1", "Corolla", 5000).await?;
    let mut client = customer_client(platform.channel(Svc::Reservation).await);

    // The saga: a reservation confirmed.
    let (span, saga) = customer_action("reserve");
    let reserved = client
        .reserve(reserve("trace-1", "tracy", "TRACE-1", day(320), day(323)))
        .instrument(span)
        .await?
        .into_inner()
        .reservation
        .unwrap();
    platform
        .watch_until(&reserved.reservation_id, |r| {
            r.status() == ReservationStatus::Confirmed
        })
        .await?;

    // A rejection: the same days again are paid, then refused by fleet and refunded.
    let (span, rejection) = customer_action("reserve taken days");
    let refused = client
        .reserve(reserve("trace-2", "rita", "TRACE-1", day(321), day(322)))
        .instrument(span)
        .await?
        .into_inner()
        .reservation
        .unwrap();
    platform
        .watch_until(&refused.reservation_id, |r| {
            r.status() == ReservationStatus::Rejected
        })
        .await?;

    // A cancel: the first customer gives the car back.
    let (span, cancel) = customer_action("cancel");
    client
        .cancel_reservation(CancelReservationRequest {
            reservation_id: reserved.reservation_id.clone(),
            customer_id: "tracy".into(),
        })
        .instrument(span)
        .await?;

    exported
        .until("the last hop of each flow", |spans| {
            processed(
                spans,
                &saga,
                "rentacar.reservation.confirmed",
                "mypage-projection",
            ) && processed(
                spans,
                &rejection,
                "rentacar.reservation.rejected",
                "mypage-projection",
            ) && processed(
                spans,
                &cancel,
                "rentacar.reservation.canceled",
                "mypage-projection",
            ) && processed(spans, &cancel, "rentacar.payment.canceled", "fleet-bookings")
        })
        .await;

    // The saga, hop by hop.
    let trace = Trace::of(&exported.spans, &saga);
    let reserve_client = trace.find(
        "rentacar.reservation.v1.ReservationService/Reserve",
        "CLIENT",
        &[],
    );
    let reserve_server = trace.find(
        "rentacar.reservation.v1.ReservationService/Reserve",
        "SERVER",
        &[],
    );
    assert_child(reserve_server, reserve_client);
    let pay_client = trace.find("rentacar.payment.v1.PaymentService/Pay", "CLIENT", &[]);
    let pay_server = trace.find("rentacar.payment.v1.PaymentService/Pay", "SERVER", &[]);
    assert_child(pay_server, pay_client);
    // payment → fleet: the approval books the car.
    let (approved, booking) = trace.hop("rentacar.payment.approved", "fleet-bookings");
    // fleet → reservation: the booking confirms the reservation.
    let (booked, confirming) = trace.hop("rentacar.fleet.car_booked", "reservation-saga");
    // reservation → mypage: the read model follows.
    let (confirmed, projected) = trace.hop("rentacar.reservation.confirmed", "mypage-projection");
    // Each event continues the span of the change that caused it, and database work
    // shows inside the consumers.
    assert!(
        trace.within(pay_client, reserve_server),
        "Pay is called within Reserve"
    );
    assert!(
        trace.within(approved, pay_server),
        "the approval comes from Pay's change"
    );
    assert!(
        trace.within(booked, booking),
        "car_booked comes from fleet's booking"
    );
    assert!(
        trace.within(confirmed, confirming),
        "the confirmation comes from the saga"
    );
    for step in [booking, confirming, projected] {
        assert!(
            trace
                .spans
                .iter()
                .any(|s| s.name == "inbox transaction" && s.parent_span_id == step.span_id),
            "{} shows its database transaction",
            step.name
        );
    }

    // The rejection: fleet refuses, reservation refunds, mypage follows.
    let trace = Trace::of(&exported.spans, &rejection);
    let (_, refusing) = trace.hop("rentacar.fleet.booking_rejected", "reservation-saga");
    let refund = trace.find("rentacar.payment.v1.PaymentService/CancelPayment", "SERVER", &[]);
    assert!(
        trace.within(refund, refusing),
        "the refund is made by the saga's step"
    );
    trace.hop("rentacar.reservation.rejected", "mypage-projection");

    // The cancel: refunded, the days freed by fleet, mypage follows.
    let trace = Trace::of(&exported.spans, &cancel);
    let cancel_server = trace.find(
        "rentacar.reservation.v1.ReservationService/CancelReservation",
        "SERVER",
        &[],
    );
    let refund = trace.find("rentacar.payment.v1.PaymentService/CancelPayment", "SERVER", &[]);
    assert!(trace.within(refund, cancel_server));
    trace.hop("rentacar.payment.canceled", "fleet-bookings");

    // The figures operators watch.
    exported.until("metrics of every outcome", |_| true).await;
    let outcome = |name: &'static str| ("outcome", name);
    assert_eq!(
        exported.value("rentacar.reservation.outcomes", &[outcome("confirmed")]),
        1.0
    );
    assert_eq!(
        exported.value("rentacar.reservation.outcomes", &[outcome("rejected")]),
        1.0
    );
    assert_eq!(
        exported.value("rentacar.reservation.outcomes", &[outcome("canceled")]),
        1.0
    );
    let sagas = exported.points("rentacar.saga.duration", &[]);
    assert_eq!(sagas.len(), 1);
    assert_eq!(sagas[0]["count"], 1, "one reservation was confirmed");
    assert!(sagas[0]["sum"].as_f64().unwrap() > 0.0);
    let reserves = exported.points(
        "rpc.server.call.duration",
        &[
            ("rpc.method", "ReservationService/Reserve"),
            ("rpc.response.status_code", "OK"),
        ],
    );
    assert!(reserves.iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>() >= 2);
    // wait_for_catalog probes with a token payment refuses: errors by code.
    assert!(
        !exported
            .points(
                "rpc.server.call.duration",
                &[("rpc.response.status_code", "INVALID_ARGUMENT")]
            )
            .is_empty()
    );
    // Every event was published: the outboxes drain to nothing (the relays measure each
    // second), and no event ended as a dead letter.
    let deadline = tokio::time::Instant::now() + rentacar_testkit::EVENTUALLY;
    loop {
        exported.until("the outboxes' lag", |_| true).await;
        let lag: f64 = ["reservation", "payment", "fleet"]
            .iter()
            .map(|service| {
                exported.value("rentacar.outbox.pending", &[("service", service)])
                    + exported.value("rentacar.outbox.oldest_age", &[("service", service)])
            })
            .sum();
        if lag == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outboxes never drained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!exported.metrics.contains_key("rentacar.dead_letters"));
    for group in ["fleet-bookings", "reservation-saga", "mypage-projection"] {
        assert_eq!(
            exported.value(
                "rentacar.consumer.lag",
                &[("messaging.consumer.group.name", group)]
            ),
            0.0,
            "{group} has caught up"
        );
    }

    exported.telemetry.shutdown().await;
    platform.shutdown().await
}
