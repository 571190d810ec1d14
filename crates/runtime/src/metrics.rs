//! Per-RPC metrics: `rpc.server.call.duration` (seconds) with the method and status code
//! of every call a service answers, as OpenTelemetry's RPC conventions name them. Rate
//! and errors by code are its count, split by `rpc.response.status_code`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::{KeyValue, global, metrics::Histogram};

/// Boundaries in seconds: the SDK's defaults suit milliseconds.
const DURATION_BOUNDARIES: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The meter every rentacar metric is recorded with.
pub fn meter() -> opentelemetry::metrics::Meter {
    global::meter("rentacar")
}

/// A tower layer timing the calls of a gRPC server whose path passes a filter.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    duration: Histogram<f64>,
    measured: fn(&str) -> bool,
}

impl RpcMetricsLayer {
    /// Times the calls whose path (`/package.Service/Method`) passes `measured`.
    pub fn only(measured: fn(&str) -> bool) -> Self {
        Self {
            measured,
            duration: meter()
                .f64_histogram("rpc.server.call.duration")
                .with_unit("s")
                .with_description("Duration of gRPC calls answered")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            duration: self.duration.clone(),
            measured: self.measured,
        }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    duration: Histogram<f64>,
    measured: fn(&str) -> bool,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !(self.measured)(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let mut call_in_flight = InFlight {
            duration: self.duration.clone(),
            method: Some(request.uri().path().trim_start_matches('/').to_owned()),
            started: Instant::now(),
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            // Errors of unary calls come trailers-only, with grpc-status in the headers;
            // without it the call succeeded (or a stream reports its end in trailers).
            let code = match &response {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            call_in_flight.finish(code);
            response
        })
    }
}

/// A call being answered; one dropped before its answer (the client gave up, its deadline
/// passed) is recorded as CANCELLED.
struct InFlight {
    duration: Histogram<f64>,
    method: Option<String>,
    started: Instant,
}

impl InFlight {
    fn finish(&mut self, code: tonic::Code) {
        let Some(method) = self.method.take() else { return };
        let mut attributes = vec![
            KeyValue::new("rpc.system.name", "grpc"),
            KeyValue::new("rpc.method", method),
            KeyValue::new("rpc.response.status_code", code_name(code)),
        ];
        if code != tonic::Code::Ok {
            attributes.push(KeyValue::new("error.type", code_name(code)));
        }
        self.duration
            .record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// The canonical upper-case name of a status code, as the conventions write it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
