//! Cars and the rules for registering them.

use rentacar_types::{FieldViolations, Money};

/// The longest car number accepted.
const MAX_CAR_NUMBER_LEN: usize = 20;
/// The longest model name accepted.
const MAX_MODEL_LEN: usize = 100;

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
        let car_number = validate_car_number(car_number, &mut violations);
        let model = violations.required("model", model);
        if model.chars().count() > MAX_MODEL_LEN {
            violations.add("model", format!("must be at most {MAX_MODEL_LEN} characters"));
        }
        let daily_price = Money::positive("daily_price", daily_price, &mut violations);
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

/// Checks a car number: 1 to 20 letters, digits or dashes.
pub fn validate_car_number(value: &str, violations: &mut FieldViolations) -> String {
    let value = violations.required("car_number", value);
    if !value.is_empty()
        && (value.len() > MAX_CAR_NUMBER_LEN || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        violations.add(
            "car_number",
            format!("must be 1 to {MAX_CAR_NUMBER_LEN} letters, digits or dashes"),
        );
    }
    value
}
