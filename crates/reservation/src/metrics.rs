//! The saga's figures, as OpenTelemetry metrics:
//!
//! - `rentacar.reservation.outcomes`: reservations that ended, by `outcome` (`confirmed`,
//!   `rejected`, `canceled`), counted once, after the change committed;
//! - `rentacar.saga.duration`: seconds from `Reserve` recording a reservation to its
//!   confirmation.

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram},
};
use rentacar_runtime::metrics::meter;

use crate::{domain::Status, store};

/// Seconds: a saga takes milliseconds when all is well, minutes while a service is down.
const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone)]
pub struct SagaMetrics {
    outcomes: Counter<u64>,
    duration: Histogram<f64>,
}

impl SagaMetrics {
    pub fn new() -> Self {
        Self {
            outcomes: meter()
                .u64_counter("rentacar.reservation.outcomes")
                .with_unit("{reservation}")
                .with_description("Reservations confirmed, rejected or canceled")
                .build(),
            duration: meter()
                .f64_histogram("rentacar.saga.duration")
                .with_unit("s")
                .with_description("Time from Reserve to the reservation's confirmation")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
        }
    }

    /// A reservation recorded at `created_at_ms` reached `outcome`.
    pub fn ended(&self, outcome: Status, created_at_ms: i64) {
        let name = match outcome {
            Status::Confirmed => "confirmed",
            Status::Rejected => "rejected",
            Status::Canceled => "canceled",
            Status::PendingPayment | Status::Paid => return,
        };
        self.outcomes.add(1, &[KeyValue::new("outcome", name)]);
        if outcome == Status::Confirmed {
            let elapsed_ms = (store::now_ms() - created_at_ms).max(0);
            self.duration.record(elapsed_ms as f64 / 1000.0, &[]);
        }
    }
}
