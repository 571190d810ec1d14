//! Building event envelopes and naming their subjects.

use prost::Message;
use rentacar_proto::events::{EventEnvelope, event_envelope::Payload};

/// An event about to be stored in an outbox.
#[derive(Debug, Clone)]
pub struct Event {
    pub envelope: EventEnvelope,
}

impl Event {
    /// A new event with a fresh id, stamped now, from `producer` about `aggregate_id`.
    pub fn new(producer: &str, aggregate_id: impl Into<String>, payload: Payload) -> Self {
        let now = std::time::SystemTime::now();
        let envelope = EventEnvelope {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: subject(&payload).to_owned(),
            occurred_at: Some(now.into()),
            aggregate_id: aggregate_id.into(),
            producer: producer.to_owned(),
            payload: Some(payload),
        };
        Self { envelope }
    }

    pub fn id(&self) -> &str {
        &self.envelope.event_id
    }

    pub fn subject(&self) -> &'static str {
        self.envelope
            .payload
            .as_ref()
            .map(subject)
            .unwrap_or("rentacar.unknown")
    }

    pub fn encode(&self) -> Vec<u8> {
        self.envelope.encode_to_vec()
    }
}

/// The subject each kind of event is published on: `rentacar.<context>.<event>`.
pub fn subject(payload: &Payload) -> &'static str {
    match payload {
        Payload::CarRegistered(_) => "rentacar.fleet.car_registered",
        Payload::CarBooked(_) => "rentacar.fleet.car_booked",
        Payload::BookingRejected(_) => "rentacar.fleet.booking_rejected",
        Payload::CarReleased(_) => "rentacar.fleet.car_released",
        Payload::PaymentApproved(_) => "rentacar.payment.approved",
        Payload::PaymentCanceled(_) => "rentacar.payment.canceled",
        Payload::ReservationPaid(_) => "rentacar.reservation.paid",
        Payload::ReservationConfirmed(_) => "rentacar.reservation.confirmed",
        Payload::ReservationRejected(_) => "rentacar.reservation.rejected",
        Payload::ReservationCanceled(_) => "rentacar.reservation.canceled",
    }
}
