//! What the read model holds and the rules that move it, free of any store: a row per
//! reservation and a row per car, and how an event changes them.
//!
//! A reservation row only moves forward along the reservation's states, so a replayed or
//! late event leaves it as it is. A status event may overtake the paid event that details
//! the reservation (after a redelivery); it then leaves a row with just the status, and the
//! paid event fills in the details later.

use rentacar_proto::events::{CarRegistered, EventEnvelope, ReservationPaid, event_envelope::Payload};
use rentacar_types::Money;

/// The subjects mypage follows.
pub const SUBJECTS: [&str; 5] = [
    "rentacar.fleet.car_registered",
    "rentacar.reservation.paid",
    "rentacar.reservation.confirmed",
    "rentacar.reservation.rejected",
    "rentacar.reservation.canceled",
];

/// Reservation states that hold a car's days.
pub const HOLDING: [&str; 2] = ["PAID", "CONFIRMED"];

/// One reservation as its customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationView {
    pub reservation_id: String,
    pub customer_id: String,
    pub car_number: String,
    /// Empty until the paid event was applied.
    pub pickup_date: String,
    pub return_date: String,
    pub price: Money,
    pub status: String,
    /// Sequence of the `reservation.paid` event: the order reservations are listed in.
    pub paid_sequence: i64,
    pub last_event_sequence: i64,
}

impl ReservationView {
    /// Whether the paid event has been applied (the row is not just a status).
    pub fn has_details(&self) -> bool {
        !self.pickup_date.is_empty()
    }

    /// Whether the reservation keeps its car's days from others.
    pub fn holds_days(&self) -> bool {
        self.has_details() && HOLDING.contains(&self.status.as_str())
    }
}

/// A car of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarView {
    pub car_number: String,
    pub model: String,
    pub daily_price: Money,
    pub last_event_sequence: i64,
}

/// What the read model knows of a car for some dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarAvailability {
    /// Reservations holding at least one of the days.
    pub conflicting_reservation_ids: Vec<String>,
    /// The highest event sequence reflected for the car: its registration or any
    /// reservation of it.
    pub last_event_sequence: i64,
}

/// A reservation's move to `status`, as an event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub reservation_id: String,
    pub customer_id: String,
    /// Known from cancellations only; other status events leave it to the paid event.
    pub car_number: String,
    pub status: &'static str,
}

/// An event as the read model sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewEvent {
    CarRegistered(CarRegistered),
    Paid(ReservationPaid),
    Status(StatusChange),
}

impl ViewEvent {
    /// The read model's view of `event`, or `None` for events it does not follow.
    pub fn from_envelope(event: &EventEnvelope) -> Option<Self> {
        let status = |reservation_id: &str, customer_id: &str, car_number: &str, status| {
            Some(Self::Status(StatusChange {
                reservation_id: reservation_id.to_owned(),
                customer_id: customer_id.to_owned(),
                car_number: car_number.to_owned(),
                status,
            }))
        };
        match event.payload.as_ref()? {
            Payload::CarRegistered(car) => Some(Self::CarRegistered(car.clone())),
            Payload::ReservationPaid(paid) => Some(Self::Paid(paid.clone())),
            Payload::ReservationConfirmed(e) => status(&e.reservation_id, &e.customer_id, "", "CONFIRMED"),
            Payload::ReservationRejected(e) => status(&e.reservation_id, &e.customer_id, "", "REJECTED"),
            Payload::ReservationCanceled(e) => {
                status(&e.reservation_id, &e.customer_id, &e.car_number, "CANCELED")
            }
            _ => None,
        }
    }
}

/// The states a reservation may reach `status` from: the reservation's own state machine.
pub fn sources_of(status: &str) -> &'static [&'static str] {
    match status {
        "CONFIRMED" | "REJECTED" => &["PAID"],
        "CANCELED" => &["PAID", "CONFIRMED"],
        _ => &[],
    }
}

/// The car row a registration at stream sequence `seq` makes.
pub fn car_view(car: &CarRegistered, seq: i64) -> CarView {
    CarView {
        car_number: car.car_number.clone(),
        model: car.model.clone(),
        daily_price: car.daily_price.clone().unwrap_or_default().into(),
        last_event_sequence: seq,
    }
}

/// The row a reservation's paid event at `seq` makes when it comes first.
pub fn paid_row(paid: &ReservationPaid, seq: i64) -> ReservationView {
    ReservationView {
        reservation_id: paid.reservation_id.clone(),
        customer_id: paid.customer_id.clone(),
        car_number: paid.car_number.clone(),
        pickup_date: paid.pickup_date.clone(),
        return_date: paid.return_date.clone(),
        price: paid.price.clone().unwrap_or_default().into(),
        status: "PAID".to_owned(),
        paid_sequence: seq,
        last_event_sequence: seq,
    }
}

/// The row a status event at `seq` makes when it overtook the reservation's paid event.
pub fn status_row(change: &StatusChange, seq: i64) -> ReservationView {
    ReservationView {
        reservation_id: change.reservation_id.clone(),
        customer_id: change.customer_id.clone(),
        car_number: change.car_number.clone(),
        pickup_date: String::new(),
        return_date: String::new(),
        price: Money::default(),
        status: change.status.to_owned(),
        paid_sequence: seq,
        last_event_sequence: seq,
    }
}

/// The reservation row after the paid event at `seq`, or `None` if it changes nothing.
pub fn after_paid(
    existing: Option<&ReservationView>,
    paid: &ReservationPaid,
    seq: i64,
) -> Option<ReservationView> {
    match existing {
        None => Some(paid_row(paid, seq)),
        Some(row) if row.has_details() => None,
        // A status that overtook the paid event is kept.
        Some(placeholder) => Some(ReservationView {
            status: placeholder.status.clone(),
            last_event_sequence: placeholder.last_event_sequence,
            ..paid_row(paid, seq)
        }),
    }
}

/// The reservation row after `change` at `seq`, or `None` if the state machine refuses it
/// (a replay, or an event older than the row).
pub fn after_status(
    existing: Option<&ReservationView>,
    change: &StatusChange,
    seq: i64,
) -> Option<ReservationView> {
    match existing {
        None => Some(status_row(change, seq)),
        Some(row) if sources_of(change.status).contains(&row.status.as_str()) => Some(ReservationView {
            status: change.status.to_owned(),
            last_event_sequence: seq,
            ..row.clone()
        }),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid() -> ReservationPaid {
        ReservationPaid {
            reservation_id: "r1".into(),
            customer_id: "alice".into(),
            car_number: "1111".into(),
            pickup_date: "2026-12-01".into(),
            return_date: "2026-12-03".into(),
            ..Default::default()
        }
    }

    fn change(status: &'static str) -> StatusChange {
        StatusChange {
            reservation_id: "r1".into(),
            customer_id: "alice".into(),
            car_number: String::new(),
            status,
        }
    }

    #[test]
    fn a_replayed_event_changes_nothing() {
        let row = after_paid(None, &paid(), 5).unwrap();
        assert_eq!(after_paid(Some(&row), &paid(), 5), None);
        let confirmed = after_status(Some(&row), &change("CONFIRMED"), 7).unwrap();
        assert_eq!(after_status(Some(&confirmed), &change("CONFIRMED"), 7), None);
    }

    #[test]
    fn a_status_that_overtook_its_paid_event_is_kept() {
        let placeholder = after_status(None, &change("CANCELED"), 9).unwrap();
        assert!(!placeholder.holds_days());
        let row = after_paid(Some(&placeholder), &paid(), 5).unwrap();
        assert_eq!(row.status, "CANCELED");
        assert_eq!((row.paid_sequence, row.last_event_sequence), (5, 9));
        assert!(!row.holds_days());
    }

    #[test]
    fn rows_never_move_backwards() {
        let row = after_paid(None, &paid(), 5).unwrap();
        let canceled = after_status(Some(&row), &change("CANCELED"), 8).unwrap();
        assert_eq!(after_status(Some(&canceled), &change("CONFIRMED"), 7), None);
    }
}
