//! What operators watch of the event backbone, as OpenTelemetry metrics:
//!
//! - `rentacar.outbox.pending` and `rentacar.outbox.oldest_age`: events stored but not yet
//!   acknowledged by the stream, and how long the oldest has waited (the outbox lag);
//! - `rentacar.consumer.lag`: events in the stream a durable consumer has not been handed
//!   yet, as of its last delivery;
//! - `rentacar.dead_letters`: events a consumer gave up on.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry::{KeyValue, metrics::Counter};
use rentacar_runtime::metrics::meter;

/// The outbox lag as last measured by the relay.
#[derive(Default)]
pub(crate) struct OutboxLag {
    pending: AtomicU64,
    oldest_age_ms: AtomicU64,
}

impl OutboxLag {
    /// Lag reported for `service`'s outbox.
    pub(crate) fn registered(service: &str) -> Arc<Self> {
        let lag = Arc::new(Self::default());
        let attributes = [KeyValue::new("service", service.to_owned())];
        let (reported, labels) = (lag.clone(), attributes.clone());
        meter()
            .u64_observable_gauge("rentacar.outbox.pending")
            .with_unit("{event}")
            .with_description("Events stored in the outbox and not yet acknowledged by the stream")
            .with_callback(move |gauge| gauge.observe(reported.pending.load(Ordering::Relaxed), &labels))
            .build();
        let reported = lag.clone();
        meter()
            .f64_observable_gauge("rentacar.outbox.oldest_age")
            .with_unit("s")
            .with_description("How long the oldest unsent outbox event has waited")
            .with_callback(move |gauge| {
                let age = reported.oldest_age_ms.load(Ordering::Relaxed) as f64 / 1000.0;
                gauge.observe(age, &attributes)
            })
            .build();
        lag
    }

    pub(crate) fn set(&self, pending: u64, oldest_age_ms: u64) {
        self.pending.store(pending, Ordering::Relaxed);
        self.oldest_age_ms.store(oldest_age_ms, Ordering::Relaxed);
    }
}

/// A durable consumer's lag, from the pending count JetStream sends with each delivery.
pub(crate) fn consumer_lag(consumer: &str) -> Arc<AtomicU64> {
    let lag = Arc::new(AtomicU64::new(0));
    let reported = lag.clone();
    let attributes = [KeyValue::new(
        "messaging.consumer.group.name",
        consumer.to_owned(),
    )];
    meter()
        .u64_observable_gauge("rentacar.consumer.lag")
        .with_unit("{event}")
        .with_description("Events in the stream not yet delivered to the durable consumer")
        .with_callback(move |gauge| gauge.observe(reported.load(Ordering::Relaxed), &attributes))
        .build();
    lag
}

pub(crate) fn dead_letters() -> Counter<u64> {
    meter()
        .u64_counter("rentacar.dead_letters")
        .with_unit("{event}")
        .with_description("Events moved to the dead-letter stream after failing too often")
        .build()
}
