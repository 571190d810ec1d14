//! Trace context across the event hops: the outbox row keeps the context of the change
//! that stored it, the relay publishes each event in a producer span that continues it and
//! sends that span's context as `traceparent`/`tracestate` NATS headers, and a consumer
//! applies the event in a consumer span whose parent is the producer span.
//!
//! Spans use the target and level of the gRPC spans (`otel::tracing`, TRACE), which the
//! subscriber always lets through, so traces do not depend on the log level.

use std::collections::HashMap;

use async_nats::HeaderMap;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector},
    trace::TraceContextExt,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C headers, lower case on both sides: NATS header names are case-sensitive.
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The current trace context as `(traceparent, tracestate)`, for an outbox row.
pub(crate) fn current() -> (Option<String>, Option<String>) {
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&Context::current(), &mut carrier)
    });
    (carrier.remove(TRACEPARENT), carrier.remove(TRACESTATE))
}

/// The span publishing one event, continuing the trace its outbox row recorded.
pub(crate) fn publish_span(
    subject: &str,
    event_id: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> tracing::Span {
    let span = tracing::trace_span!(
        target: "otel::tracing",
        "publish",
        otel.name = %format!("{subject} publish"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = %subject,
        messaging.message.id = %event_id,
    );
    let mut carrier = HashMap::new();
    if let Some(traceparent) = traceparent {
        carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    }
    if let Some(tracestate) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), tracestate.to_owned());
    }
    adopt(
        &span,
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier)),
    );
    span
}

/// Adds `span`'s context to an outgoing message's headers.
pub(crate) fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut NatsHeaders(headers))
    });
}

/// The span applying one event in `consumer`, a child of the span that published it.
pub(crate) fn process_span(consumer: &str, subject: &str, headers: Option<&HeaderMap>) -> tracing::Span {
    let span = tracing::trace_span!(
        target: "otel::tracing",
        "process",
        otel.name = %format!("{subject} process"),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %subject,
        messaging.consumer.group.name = %consumer,
    );
    if let Some(headers) = headers {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&NatsHeadersRef(headers)));
        adopt(&span, parent);
    }
    span
}

/// Makes `parent` the parent of `span` when it holds a trace; else `span` starts one.
fn adopt(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Only fails for a span already started or disabled: it then keeps its own trace.
        let _ = span.set_parent(parent);
    }
}

struct NatsHeaders<'a>(&'a mut HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Parsing, unlike `From`, refuses a bad name or value instead of panicking.
        if let (Ok(name), Ok(value)) = (
            key.parse::<async_nats::HeaderName>(),
            value.parse::<async_nats::HeaderValue>(),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct NatsHeadersRef<'a>(&'a HeaderMap);

impl Extractor for NatsHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|(name, _)| AsRef::<str>::as_ref(name))
            .collect()
    }
}
