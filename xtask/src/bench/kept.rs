//! What the platform kept of the reservations it acknowledged, asked over its API.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// The reservations k6 saw acknowledged (saga.js with `PRINT_RESERVED=1` logs each).
pub(crate) fn acknowledged_ids(log: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split("msg=\"reserved ").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect())
}

/// What the platform kept of the reservations it acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) acknowledged: usize,
    pub(crate) confirmed: usize,
    pub(crate) rejected: usize,
    /// Acknowledged, but unknown to reservation now.
    pub(crate) missing: Vec<String>,
    /// Still PAID (or otherwise not final) once the platform had time to settle.
    pub(crate) unsettled: Vec<String>,
    /// A car's day held by two confirmed reservations.
    pub(crate) double_booked: Vec<String>,
    /// A confirmed reservation not charged its price, or a rejected one not refunded.
    pub(crate) money_mismatch: Vec<String>,
}

impl Verdict {
    pub(crate) fn kept_everything(&self) -> bool {
        self.missing.is_empty()
            && self.unsettled.is_empty()
            && self.double_booked.is_empty()
            && self.money_mismatch.is_empty()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sample = |ids: &[String]| match ids.first() {
            Some(first) => format!("{} (for example {first})", ids.len()),
            None => "0".to_owned(),
        };
        writeln!(f, "| check | result |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| reservations acknowledged by Reserve | {} ({} CONFIRMED, {} REJECTED) |",
            self.acknowledged, self.confirmed, self.rejected
        )?;
        writeln!(f, "| acknowledged but missing | {} |", sample(&self.missing))?;
        writeln!(f, "| not final after settling | {} |", sample(&self.unsettled))?;
        writeln!(
            f,
            "| a car's day booked twice | {} |",
            sample(&self.double_booked)
        )?;
        writeln!(
            f,
            "| money not matching (confirmed not charged its price, rejected not refunded) | {} |",
            sample(&self.money_mismatch)
        )
    }
}

/// Asks reservation and payment, as the customer, about every acknowledged reservation,
/// once none of them is still on its way (or after two minutes).
pub(crate) async fn check_kept(
    ports: &BTreeMap<&'static str, u16>,
    token: &str,
    acknowledged: &[String],
) -> anyhow::Result<Verdict> {
    use rentacar_proto::{
        payment::{GetPaymentRequest, PaymentStatus, payment_service_client::PaymentServiceClient},
        reservation::{
            GetReservationRequest, Reservation, ReservationStatus,
            reservation_service_client::ReservationServiceClient,
        },
    };
    let address = |service: &str| format!("http://127.0.0.1:{}", ports[service]);
    let mut reservations = ReservationServiceClient::connect(address("reservation")).await?;
    let mut payments = PaymentServiceClient::connect(address("payment")).await?;
    pub(crate) fn signed<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}").parse().expect("a token is ASCII");
        request.metadata_mut().insert("authorization", value);
        request
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut verdict = Verdict {
        acknowledged: acknowledged.len(),
        ..Verdict::default()
    };
    let mut found: Vec<Reservation> = Vec::new();
    for id in acknowledged {
        loop {
            let answer = reservations
                .get_reservation(signed(
                    token,
                    GetReservationRequest {
                        reservation_id: id.clone(),
                    },
                ))
                .await;
            match answer {
                Ok(response) => {
                    let reservation = response.into_inner().reservation.unwrap_or_default();
                    if reservation.status() == ReservationStatus::Paid && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    found.push(reservation);
                }
                Err(status) if status.code() == tonic::Code::NotFound => verdict.missing.push(id.clone()),
                Err(status) => bail!("GetReservation {id}: {status}"),
            }
            break;
        }
    }

    let mut held = std::collections::HashMap::new();
    for reservation in &found {
        let id = reservation.reservation_id.clone();
        let payment = payments
            .get_payment(signed(
                token,
                GetPaymentRequest {
                    reservation_id: id.clone(),
                },
            ))
            .await
            .with_context(|| format!("GetPayment {id}"))?
            .into_inner()
            .payment
            .unwrap_or_default();
        let charged = payment.amount == reservation.price;
        match reservation.status() {
            ReservationStatus::Confirmed => {
                verdict.confirmed += 1;
                if !(charged && payment.status() == PaymentStatus::Approved) {
                    verdict.money_mismatch.push(id.clone());
                }
                let pickup = chrono::NaiveDate::parse_from_str(&reservation.pickup_date, "%Y-%m-%d")?;
                let back = chrono::NaiveDate::parse_from_str(&reservation.return_date, "%Y-%m-%d")?;
                for day in pickup.iter_days().take_while(|day| *day < back) {
                    if let Some(other) = held.insert((reservation.car_number.clone(), day), id.clone()) {
                        verdict.double_booked.push(format!("{id} and {other}"));
                    }
                }
            }
            ReservationStatus::Rejected => {
                verdict.rejected += 1;
                if payment.status() != PaymentStatus::Refunded {
                    verdict.money_mismatch.push(id.clone());
                }
            }
            _ => verdict.unsettled.push(id.clone()),
        }
    }
    Ok(verdict)
}
