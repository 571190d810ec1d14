//! The read model's one interface: what the gRPC handlers ask of a provider. `sql` and
//! `dynamodb` implement it and answer alike; the behaviour suite runs against both.

use async_trait::async_trait;
use rentacar_types::RentalPeriod;

use crate::{
    Error,
    domain::{CarAvailability, CarView, ReservationView},
};

/// Some rows in order and the key of the last one, when more follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
}

impl<T, K> Page<T, K> {
    /// Cuts `items`, read with a limit of `size + 1`, to `size`; the extra row only tells
    /// that another page follows.
    pub fn from_one_extra(mut items: Vec<T>, size: u64, key: impl Fn(&T) -> K) -> Self {
        let more = items.len() as u64 > size;
        items.truncate(size as usize);
        let next = if more { items.last().map(key) } else { None };
        Self { items, next }
    }
}

#[async_trait]
pub trait ReadModel: Send + Sync + 'static {
    /// One page of a customer's reservations, newest first (by the sequence of their paid
    /// event), continuing after the sequence `after`.
    async fn my_reservations(
        &self,
        customer_id: &str,
        size: u64,
        after: Option<i64>,
    ) -> Result<Page<ReservationView, i64>, Error>;

    /// What holds `car_number` during `period`, or `None` if the car is not known.
    async fn car_availability(
        &self,
        car_number: &str,
        period: &RentalPeriod,
    ) -> Result<Option<CarAvailability>, Error>;

    /// One page of the cars free for all of `period`, by car number, continuing after
    /// the number `after`.
    async fn available_cars(
        &self,
        period: &RentalPeriod,
        size: u64,
        after: Option<&str>,
    ) -> Result<Page<CarView, String>, Error>;
}
