//! Cars and the rules for registering them.

use rentacar_types::{FieldViolations, MAX_NAME_CHARS, Money};

/// A registered car.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    pub car_number: String,
    pub model: String,
    pub daily_price: Money,
}

impl Car {
    /// Validates a registration; every problem is reported, not just the first.
    pub fn new(
        car_number: &str,
        model: &str,
        daily_price: Option<&rentacar_proto::common::Money>,
    ) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        let car_number = violations.car_number("car_number", car_number);
        let model = violations.required_text("model", model, MAX_NAME_CHARS);
        let daily_price = Money::positive(
            "daily_price",
            daily_price,
            Money::MAX_DAILY_PRICE_MINOR,
            &mut violations,
        );
        match daily_price {
            Some(daily_price) if violations.is_empty() => Ok(Self {
                car_number,
                model,
                daily_price,
            }),
            _ => Err(violations),
        }
    }
}
