use rentacar_proto::common;

use crate::FieldViolations;

/// An amount in integer minor units of an ISO-4217 currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Money {
    pub currency_code: String,
    pub amount_minor: i64,
}

impl Money {
    /// The largest amount accepted anywhere, in minor units: a thousand billion, far above
    /// any rental, far below where sums overflow.
    pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

    /// The largest daily price of a car, in minor units; with at most a year of days a
    /// rental's price stays under [`Self::MAX_AMOUNT_MINOR`].
    pub const MAX_DAILY_PRICE_MINOR: i64 = 1_000_000_000;

    /// Validates a positive amount of at most `max` minor units from a request; problems
    /// are recorded under `field`.
    pub fn positive(
        field: &str,
        money: Option<&common::Money>,
        max: i64,
        violations: &mut FieldViolations,
    ) -> Option<Self> {
        let Some(money) = money else {
            violations.add(field, "is required");
            return None;
        };
        let code = money.currency_code.trim();
        let mut ok = true;
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
            violations.add(
                format!("{field}.currency_code"),
                "must be a three-letter ISO-4217 code in upper case, such as USD",
            );
            ok = false;
        }
        if money.amount_minor <= 0 {
            violations.add(format!("{field}.amount_minor"), "must be greater than zero");
            ok = false;
        } else if money.amount_minor > max {
            violations.add(format!("{field}.amount_minor"), format!("must be at most {max}"));
            ok = false;
        }
        ok.then(|| Self {
            currency_code: code.to_owned(),
            amount_minor: money.amount_minor,
        })
    }

    /// This amount times `factor`, or `None` on overflow.
    pub fn times(&self, factor: i64) -> Option<Self> {
        Some(Self {
            currency_code: self.currency_code.clone(),
            amount_minor: self.amount_minor.checked_mul(factor)?,
        })
    }
}

impl From<Money> for common::Money {
    fn from(money: Money) -> Self {
        Self {
            currency_code: money.currency_code,
            amount_minor: money.amount_minor,
        }
    }
}

impl From<common::Money> for Money {
    fn from(money: common::Money) -> Self {
        Self {
            currency_code: money.currency_code,
            amount_minor: money.amount_minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_lower_case_codes_and_zero_amounts() {
        let mut v = FieldViolations::new();
        let bad = common::Money {
            currency_code: "usd".into(),
            amount_minor: 0,
        };
        assert!(Money::positive("price", Some(&bad), Money::MAX_AMOUNT_MINOR, &mut v).is_none());
        let fields: Vec<_> = v.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(fields, ["price.currency_code", "price.amount_minor"]);

        let mut v = FieldViolations::new();
        let huge = common::Money {
            currency_code: "USD".into(),
            amount_minor: i64::MAX,
        };
        assert!(Money::positive("price", Some(&huge), Money::MAX_AMOUNT_MINOR, &mut v).is_none());
    }

    #[test]
    fn multiplies_without_overflow() {
        let m = Money {
            currency_code: "JPY".into(),
            amount_minor: 5000,
        };
        assert_eq!(m.times(3).unwrap().amount_minor, 15000);
        assert!(m.times(i64::MAX).is_none());
    }
}
