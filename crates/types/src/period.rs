use chrono::{Days, NaiveDate};

use crate::FieldViolations;

/// The longest rental accepted, in days.
pub const MAX_RENTAL_DAYS: i64 = 365;

/// How far ahead a rental may start, in days from today.
pub const BOOKING_HORIZON_DAYS: i64 = 365;

/// Days a car is rented: from the pickup date up to, not including, the return date, so
/// back-to-back rentals (one returns on the day the next picks up) do not overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RentalPeriod {
    pickup: NaiveDate,
    return_date: NaiveDate,
}

impl RentalPeriod {
    /// Validates `YYYY-MM-DD` dates from a request, recording problems under the field names.
    pub fn parse(pickup: &str, return_date: &str, violations: &mut FieldViolations) -> Option<Self> {
        let pickup = parse_date("pickup_date", pickup, violations);
        let return_date = parse_date("return_date", return_date, violations);
        let (pickup, return_date) = (pickup?, return_date?);
        if return_date <= pickup {
            violations.add("return_date", "must be after pickup_date");
            return None;
        }
        if (return_date - pickup).num_days() > MAX_RENTAL_DAYS {
            violations.add(
                "return_date",
                format!("must be at most {MAX_RENTAL_DAYS} days after pickup_date"),
            );
            return None;
        }
        Some(Self { pickup, return_date })
    }

    /// Validates the dates of a rental asked for today (`today` in UTC): as [`parse`](Self::parse),
    /// and the pickup lies between yesterday, the earliest date somewhere on Earth while it
    /// is `today` in UTC, and [`BOOKING_HORIZON_DAYS`] ahead.
    pub fn bookable(
        pickup: &str,
        return_date: &str,
        today: NaiveDate,
        violations: &mut FieldViolations,
    ) -> Option<Self> {
        let period = Self::parse(pickup, return_date, violations)?;
        let earliest = today - Days::new(1);
        let latest = today + Days::new(BOOKING_HORIZON_DAYS as u64);
        if period.pickup < earliest {
            violations.add("pickup_date", "must not be in the past");
            return None;
        }
        if period.pickup > latest {
            violations.add(
                "pickup_date",
                format!("must be at most {BOOKING_HORIZON_DAYS} days from today"),
            );
            return None;
        }
        Some(period)
    }

    pub fn pickup(&self) -> NaiveDate {
        self.pickup
    }

    pub fn return_date(&self) -> NaiveDate {
        self.return_date
    }

    /// Days charged: return date minus pickup date.
    pub fn days(&self) -> i64 {
        (self.return_date - self.pickup).num_days()
    }

    /// Whether the two periods share a rented day.
    pub fn overlaps(&self, other: &RentalPeriod) -> bool {
        self.pickup < other.return_date && other.pickup < self.return_date
    }
}

fn parse_date(field: &str, value: &str, violations: &mut FieldViolations) -> Option<NaiveDate> {
    let value = value.trim();
    if value.is_empty() {
        violations.add(field, "is required");
        return None;
    }
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(date) if value.len() == 10 => Some(date),
        _ => {
            violations.add(field, "must be a date as YYYY-MM-DD");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(a: &str, b: &str) -> RentalPeriod {
        RentalPeriod::parse(a, b, &mut FieldViolations::new()).unwrap()
    }

    #[test]
    fn counts_days_between_pickup_and_return() {
        assert_eq!(period("2026-12-01", "2026-12-03").days(), 2);
        assert_eq!(period("2026-12-31", "2027-01-01").days(), 1);
    }

    #[test]
    fn back_to_back_periods_do_not_overlap() {
        let first = period("2026-12-01", "2026-12-03");
        assert!(!first.overlaps(&period("2026-12-03", "2026-12-05")));
        assert!(first.overlaps(&period("2026-12-02", "2026-12-05")));
        assert!(period("2026-12-02", "2026-12-05").overlaps(&first));
    }

    #[test]
    fn bookable_rentals_start_between_yesterday_and_the_horizon() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let bookable = |a: &str, b: &str| {
            let mut v = FieldViolations::new();
            RentalPeriod::bookable(a, b, today, &mut v).ok_or(v)
        };
        assert!(bookable("2026-11-30", "2026-12-02").is_ok());
        assert!(bookable("2027-12-01", "2027-12-02").is_ok());
        let past = bookable("2026-11-29", "2026-12-02").unwrap_err();
        assert_eq!(past.iter().next().unwrap().0, "pickup_date");
        assert!(bookable("2027-12-02", "2027-12-03").is_err());
    }

    #[test]
    fn rejects_bad_dates_with_field_names() {
        let mut v = FieldViolations::new();
        assert!(RentalPeriod::parse("2026-13-01", "tomorrow", &mut v).is_none());
        let fields: Vec<_> = v.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(fields, ["pickup_date", "return_date"]);

        let mut v = FieldViolations::new();
        assert!(RentalPeriod::parse("2026-12-03", "2026-12-03", &mut v).is_none());
        assert_eq!(v.iter().next().unwrap().0, "return_date");
    }
}
