//! The payment service as reservation sees it: a guarded client, and the translation of
//! payment's statuses into reservation's errors.
//!
//! Every call has a deadline and goes through, from the outside in: a limit on calls in
//! flight (beyond it a call fails at once rather than queueing), and a circuit breaker that
//! opens when most recent calls failed (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or
//! INTERNAL; a decline is an answer, not a failure). While it is open calls fail fast with
//! UNAVAILABLE and a RetryInfo; after the open period one probe call decides whether it
//! closes. Every payment call is idempotent (keyed by reservation id), so one that failed
//! with UNAVAILABLE is tried once more, while a retry budget allows it.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use rentacar_proto::{
    common::RefundCause,
    payment::{self as pb, payment_service_client::PaymentServiceClient},
};
use rentacar_runtime::status;
use rentacar_types::FieldViolations;
use tonic::{Code, Status, body::Body, codegen::http, transport::Endpoint};
use tonic_tracing_opentelemetry::middleware::client::OtelGrpcLayer;
use tonic_types::StatusExt;
use tower::{BoxError, ServiceBuilder, retry::budget::Budget, util::BoxCloneSyncService};
use tower_resilience_circuitbreaker::{
    CircuitBreakerError, CircuitBreakerLayer, CircuitState, FailureClassifier, SlidingWindowType,
};

use crate::{Error, domain::Reservation};

/// How long establishing a connection to payment may take before the call fails over to
/// UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Calls to payment in flight at once; more fail at once with UNAVAILABLE.
const MAX_IN_FLIGHT: usize = 512;
/// The breaker looks at the calls of this last stretch of time...
const BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// ...once there were at least this many...
const BREAKER_MINIMUM_CALLS: usize = 10;
/// ...and opens when at least this share of them failed.
const BREAKER_FAILURE_RATE: f64 = 0.5;

/// How many times one payment call is tried at most: once more after UNAVAILABLE.
const PAYMENT_TRIES: u32 = 2;

/// The longest one payment call can take with `timeout` per try: every try, each with its
/// connection set up first.
pub fn longest_charge(timeout: Duration) -> Duration {
    (CONNECT_TIMEOUT + timeout) * PAYMENT_TRIES
}

/// `ErrorInfo.reason` of a call refused because the circuit is open.
const REASON_CIRCUIT_OPEN: &str = "PAYMENT_CIRCUIT_OPEN";
/// `ErrorInfo.reason` of a call refused because too many are in flight.
const REASON_OVERLOADED: &str = "PAYMENT_OVERLOADED";

type Calls = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Status>;

#[derive(Clone)]
pub struct PaymentClient {
    client: PaymentServiceClient<Calls>,
    breaker: Breaker,
    /// Retries may add a tenth to the calls made, and one a second when there are few.
    retries: Arc<tower::retry::budget::TpsBudget>,
}

/// The circuit's state as last reported, so that a charge the circuit would refuse is
/// refused before anything is written for it.
#[derive(Clone)]
struct Breaker {
    state: Arc<Mutex<BreakerState>>,
    open_period: Duration,
    /// The longest one probe call can take; a probe not heard of by then (its caller gave
    /// up before it was sent, say) lets another caller probe.
    probe_bound: Duration,
}

struct BreakerState {
    circuit: CircuitState,
    since: Instant,
    /// When a caller was let through to probe, once the open period ended.
    probe_granted: Option<Instant>,
}

/// What a caller refused while a probe is under way is told to wait.
const WHILE_PROBING: Duration = Duration::from_millis(100);

impl Breaker {
    /// How long this caller should wait, if the circuit would refuse it now: while it is
    /// open, and while its one probe call is under way. Once the open period is over,
    /// exactly one caller is let through to be the probe.
    fn paused_for(&self) -> Option<Duration> {
        let mut state = self.state.lock().expect("not poisoned");
        match state.circuit {
            CircuitState::Closed => None,
            CircuitState::Open => {
                if let Some(left) = self.open_period.checked_sub(state.since.elapsed()) {
                    return Some(left);
                }
                match state.probe_granted {
                    Some(granted) if granted.elapsed() < self.probe_bound => Some(WHILE_PROBING),
                    _ => {
                        state.probe_granted = Some(Instant::now());
                        None
                    }
                }
            }
            CircuitState::HalfOpen => (state.since.elapsed() < self.probe_bound).then_some(WHILE_PROBING),
        }
    }

    fn changed(&self, to: CircuitState) {
        *self.state.lock().expect("not poisoned") = BreakerState {
            circuit: to,
            since: Instant::now(),
            probe_granted: None,
        };
        tracing::warn!(state = ?to, "payment circuit breaker changed");
    }
}

/// What the breaker counts as a failure: no answer (a connection or deadline error), or an
/// answer that says payment is in trouble. tonic sends an error status in the response
/// headers (trailers-only), which is where this looks.
#[derive(Clone, Copy)]
struct PaymentFailures;

impl<E> FailureClassifier<http::Response<Body>, E> for PaymentFailures {
    fn classify(&self, result: &Result<http::Response<Body>, E>) -> bool {
        let Ok(response) = result else { return true };
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<i32>().ok())
            .map(Code::from_i32);
        matches!(
            code,
            Some(Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Internal)
        )
    }
}

impl PaymentClient {
    /// A client that connects on first use, so reservation starts even while payment is down.
    /// `breaker_open` is how long the circuit stays open before a probe call is let through.
    pub fn new(
        url: &str,
        timeout: Duration,
        breaker_open: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .connect_lazy();
        let breaker = Breaker {
            state: Arc::new(Mutex::new(BreakerState {
                circuit: CircuitState::Closed,
                since: Instant::now(),
                probe_granted: None,
            })),
            open_period: breaker_open,
            probe_bound: longest_charge(timeout),
        };
        let watched = breaker.clone();
        let circuit = CircuitBreakerLayer::builder()
            .name("payment")
            .sliding_window_type(SlidingWindowType::TimeBased)
            .sliding_window_duration(BREAKER_WINDOW)
            .minimum_number_of_calls(BREAKER_MINIMUM_CALLS)
            .failure_rate_threshold(BREAKER_FAILURE_RATE)
            .wait_duration_in_open(breaker_open)
            .permitted_calls_in_half_open(1)
            .on_state_transition(move |_, to| watched.changed(to))
            .failure_classifier_type(PaymentFailures)
            .build()
            .expect("the breaker's settings are valid");
        let open_period = breaker_open;
        let guarded = ServiceBuilder::new()
            // A concrete error type: a boxed one trips up the compiler's checks of the
            // generated client's futures.
            .map_err(|err: BoxError| -> Status {
                if err.is::<tower::load_shed::error::Overloaded>() {
                    return status::unavailable(
                        REASON_OVERLOADED,
                        "too many calls to the payment service in flight; try again",
                        Duration::from_millis(100),
                    );
                }
                Status::from_error(err)
            })
            .load_shed()
            .concurrency_limit(MAX_IN_FLIGHT)
            .map_err(
                move |err: CircuitBreakerError<tonic::transport::Error>| -> BoxError {
                    match err {
                        CircuitBreakerError::OpenCircuit => Box::new(status::unavailable(
                            REASON_CIRCUIT_OPEN,
                            "the payment service is failing; calls are paused",
                            open_period,
                        )),
                        CircuitBreakerError::Inner(err) => Box::new(err),
                    }
                },
            )
            .layer(circuit)
            // Each call that leaves is a client span whose context goes along as
            // `traceparent`; calls refused here never reach payment.
            .layer(OtelGrpcLayer)
            .service(channel);
        Ok(Self {
            client: PaymentServiceClient::new(BoxCloneSyncService::new(guarded)),
            breaker,
            retries: Arc::new(tower::retry::budget::TpsBudget::new(
                Duration::from_secs(10),
                1,
                0.1,
            )),
        })
    }

    /// Refuses a charge while the circuit would refuse it, before anything is written.
    pub fn check_open(&self) -> Result<(), Error> {
        match self.breaker.paused_for() {
            Some(retry_after) => Err(Error::PaymentPaused(retry_after)),
            None => Ok(()),
        }
    }

    /// Runs `call`, and once more if it failed with UNAVAILABLE from payment (not from this
    /// client's own guards) and the retry budget allows. A retry this client refuses to send
    /// (the circuit opened meanwhile) reports the first answer: whether the first call
    /// charged is still open.
    async fn idempotent<T>(
        &self,
        call: impl Fn(PaymentServiceClient<Calls>) -> BoxFuture<'static, Result<T, Status>>,
    ) -> Result<T, Status> {
        self.retries.deposit();
        match call(self.client.clone()).await {
            Err(first) if retryable(&first) && self.retries.withdraw() => {
                tracing::debug!(message = first.message(), "payment call retried");
                match call(self.client.clone()).await {
                    Err(again) if refused_here(&again) => Err(first),
                    outcome => outcome,
                }
            }
            outcome => outcome,
        }
    }

    /// Charges the reservation's price for its rental with `payment_method`, on behalf of
    /// the customer whose `token` it is; returns the payment id.
    pub async fn pay(
        &self,
        reservation: &Reservation,
        payment_method: &str,
        token: Option<&str>,
    ) -> Result<String, Error> {
        let request = pb::PayRequest {
            reservation_id: reservation.reservation_id.clone(),
            customer_id: reservation.customer_id.clone(),
            amount: Some(reservation.price.clone().into()),
            payment_method: payment_method.to_owned(),
            rental: Some(pb::Rental {
                car_number: reservation.car_number.clone(),
                pickup_date: reservation.period.pickup().to_string(),
                return_date: reservation.period.return_date().to_string(),
            }),
        };
        let response = self
            .idempotent(|mut client| {
                let request = on_behalf(request.clone(), token);
                Box::pin(async move { client.pay(request).await })
            })
            .await
            .map_err(from_status)?;
        Ok(response
            .into_inner()
            .payment
            .map(|p| p.payment_id)
            .unwrap_or_default())
    }

    /// Refunds the reservation's payment, and returns it as it now is. Refunding twice is
    /// harmless on payment's side. With cause ABANDONED nothing is refunded: a reservation
    /// not charged yet is voided, so that no later charge can go through, and a payment
    /// that was made is returned as it is.
    pub async fn refund(
        &self,
        reservation_id: &str,
        reason: &str,
        cause: RefundCause,
        token: Option<&str>,
    ) -> Result<pb::Payment, Error> {
        let request = pb::CancelPaymentRequest {
            reservation_id: reservation_id.to_owned(),
            reason: reason.to_owned(),
            cause: cause.into(),
        };
        let response = self
            .idempotent(|mut client| {
                let request = on_behalf(request.clone(), token);
                Box::pin(async move { client.cancel_payment(request).await })
            })
            .await
            .map_err(from_status)?;
        Ok(response.into_inner().payment.unwrap_or_default())
    }
}

/// A call to payment carrying the customer's token, when made for a customer; without one
/// it is reservation's own call (the settler's, a compensation).
fn on_behalf<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let bearer = token.and_then(|token| format!("Bearer {token}").parse().ok());
    if let Some(bearer) = bearer {
        request.metadata_mut().insert("authorization", bearer);
    }
    request
}

/// Whether a failed call may be tried again at once: payment (or the path to it) said
/// UNAVAILABLE, rather than this client pausing or shedding the call.
fn retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable && !refused_here(status)
}

/// Whether this client refused to send the call (open circuit, too many in flight).
fn refused_here(status: &Status) -> bool {
    status
        .get_details_error_info()
        .is_some_and(|info| info.reason == REASON_CIRCUIT_OPEN || info.reason == REASON_OVERLOADED)
}

/// What a status from payment means to a reservation's caller: every answer maps to
/// something the caller can act on. Payment's own messages are logged, not passed on:
/// they speak of payment's internals.
fn from_status(status: Status) -> Error {
    let reason = status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default();
    match (status.code(), reason.as_str()) {
        (Code::FailedPrecondition, "PAYMENT_DECLINED") => Error::PaymentDeclined(status.message().to_owned()),
        (Code::FailedPrecondition, "NOT_REFUNDABLE") | (Code::NotFound, _) => Error::NothingToRefund,
        (Code::FailedPrecondition, "PAYMENT_REFUNDED" | "PAYMENT_VOIDED") => Error::PaymentClosed,
        (Code::Unavailable, REASON_CIRCUIT_OPEN) => {
            let retry_after = status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay)
                .unwrap_or(Duration::from_secs(1));
            Error::PaymentPaused(retry_after)
        }
        // Only the payment method is the caller's to fix; the rest reservation validated.
        (Code::InvalidArgument, _) => {
            let mut violations = FieldViolations::new();
            let details = status.get_details_bad_request().map(|b| b.field_violations);
            for violation in details.unwrap_or_default() {
                if violation.field == "payment_method" {
                    violations.add("payment_method", violation.description);
                }
            }
            if violations.is_empty() {
                Error::PaymentFailed(status)
            } else {
                Error::InvalidArgument(violations)
            }
        }
        (Code::AlreadyExists, _) => Error::ChargedDifferently,
        (Code::FailedPrecondition, _) => Error::PaymentFailed(status),
        // Anything else leaves the outcome open: the same request id may be sent again.
        _ => Error::PaymentUnavailable(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_period: Duration, probe_bound: Duration) -> Breaker {
        Breaker {
            state: Arc::new(Mutex::new(BreakerState {
                circuit: CircuitState::Closed,
                since: Instant::now(),
                probe_granted: None,
            })),
            open_period,
            probe_bound,
        }
    }

    #[test]
    fn an_open_circuit_lets_exactly_one_caller_probe_once_its_period_is_over() {
        let long = Duration::from_secs(3600);
        let open = breaker(long, long);
        assert_eq!(open.paused_for(), None, "closed");
        open.changed(CircuitState::Open);
        assert!(
            open.paused_for()
                .is_some_and(|wait| wait > Duration::from_secs(3000))
        );

        let over = breaker(Duration::ZERO, long);
        over.changed(CircuitState::Open);
        assert_eq!(over.paused_for(), None, "the probe");
        assert_eq!(over.paused_for(), Some(WHILE_PROBING), "everyone else");
        over.changed(CircuitState::HalfOpen);
        assert_eq!(
            over.paused_for(),
            Some(WHILE_PROBING),
            "while the probe is answered"
        );
        over.changed(CircuitState::Closed);
        assert_eq!(over.paused_for(), None);
    }

    #[test]
    fn a_probe_never_heard_of_lets_another_caller_probe() {
        let lost = breaker(Duration::ZERO, Duration::ZERO);
        lost.changed(CircuitState::Open);
        assert_eq!(lost.paused_for(), None);
        assert_eq!(lost.paused_for(), None, "the first probe's time is up");
        lost.changed(CircuitState::HalfOpen);
        assert_eq!(
            lost.paused_for(),
            None,
            "a half-open circuit whose probe was dropped"
        );
    }
}
