//! What operators see in their tracing backend: a reservation is one trace from the
//! customer's call through payment, every event and every consumer, with correct parent
//! links, exported over OTLP to an in-process collector.
//!
//! One test per binary: the telemetry is the process's global subscriber.

use std::{collections::BTreeMap, time::Duration};

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use opentelemetry::trace::TraceContextExt;
use rentacar_proto::reservation::{ReservationStatus, reservation_service_client::ReservationServiceClient};
use rentacar_runtime::{
    config::Env,
    telemetry::{self, TelemetryConfig},
};
use rentacar_testkit::{Backend, Platform, Svc, register_car, reserve};
use tonic_tracing_opentelemetry::middleware::client::OtelGrpcLayer;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_is_one_trace_across_every_hop() -> anyhow::Result<()> {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let env = Env::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())]);
    let telemetry = telemetry::init(&TelemetryConfig::from_env(&env, "rentacar-test")?)?;
    let platform = Platform::start(Backend::Sqlite).await?;
    register_car(&platform, "TRACE-1", "Corolla", 5000).await?;

    // The customer's call, traced on the client side as a generated client with the
    // OpenTelemetry layer would do it.
    let customer = tracing::info_span!("customer reserves");
    let trace_id = customer.context().span().span_context().trace_id().to_string();
    let channel = tower::ServiceBuilder::new()
        .layer(OtelGrpcLayer)
        .service(platform.channel(Svc::Reservation).await);
    let reserved = ReservationServiceClient::new(channel)
        .reserve(reserve("trace-1", "tracy", "TRACE-1", "2031-07-01", "2031-07-04"))
        .instrument(customer)
        .await?
        .into_inner()
        .reservation
        .unwrap();
    platform
        .watch_until(&reserved.reservation_id, |r| {
            r.status() == ReservationStatus::Confirmed
        })
        .await?;
    // mypage's projection of the confirmation is the last hop.
    let mut spans = Vec::new();
    let projected = |spans: &[ExportedSpan]| {
        Trace::of(spans, &trace_id).spans.iter().any(|s| {
            s.name == "rentacar.reservation.confirmed process"
                && s.attributes
                    .get("messaging.consumer.group.name")
                    .is_some_and(|v| v.contains("mypage-projection"))
        })
    };
    let deadline = tokio::time::Instant::now() + rentacar_testkit::EVENTUALLY;
    while !projected(&spans) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mypage's projection was never exported"
        );
        telemetry.flush().await;
        drain(&mut collector, &mut spans).await;
    }

    let trace = Trace::of(&spans, &trace_id);
    let consumer = |group: &'static str| ("messaging.consumer.group.name", group);
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
    let approved = trace.find("rentacar.payment.approved publish", "PRODUCER", &[]);
    let booking = trace.find(
        "rentacar.payment.approved process",
        "CONSUMER",
        &[consumer("fleet-bookings")],
    );
    assert_child(booking, approved);
    // fleet → reservation: the booking confirms the reservation.
    let booked = trace.find("rentacar.fleet.car_booked publish", "PRODUCER", &[]);
    let confirming = trace.find(
        "rentacar.fleet.car_booked process",
        "CONSUMER",
        &[consumer("reservation-saga")],
    );
    assert_child(confirming, booked);
    // reservation → mypage: the read model follows.
    let confirmed = trace.find("rentacar.reservation.confirmed publish", "PRODUCER", &[]);
    let projected = trace.find(
        "rentacar.reservation.confirmed process",
        "CONSUMER",
        &[consumer("mypage-projection")],
    );
    assert_child(projected, confirmed);

    // Each event continues the span of the change that caused it.
    let within = |span: &ExportedSpan, ancestor: &ExportedSpan| {
        let mut current = span;
        while let Some(parent) = trace.spans.iter().find(|s| s.span_id == current.parent_span_id) {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            current = parent;
        }
        false
    };
    assert!(within(pay_client, reserve_server), "Pay is called within Reserve");
    assert!(
        within(approved, pay_server),
        "the approval is published from Pay's change"
    );
    assert!(within(booked, booking), "car_booked comes from fleet's booking");
    assert!(
        within(confirmed, confirming),
        "the confirmation comes from the saga's step"
    );

    telemetry.shutdown().await;
    platform.shutdown().await
}
