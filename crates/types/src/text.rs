//! Bounds on the text a request may carry, so that every backend can store it (PostgreSQL
//! refuses NUL) and every event built from it fits in the stream.

use crate::FieldViolations;

/// Ids and tokens: request, customer, reservation and payment ids, payment method tokens.
pub const MAX_ID_CHARS: usize = 64;
/// Car numbers: letters, digits and dashes.
pub const MAX_CAR_NUMBER_CHARS: usize = 20;
/// Names such as a car's model.
pub const MAX_NAME_CHARS: usize = 100;
/// Free text such as a refund reason.
pub const MAX_FREE_TEXT_CHARS: usize = 500;
/// Page tokens as the services hand them out.
pub const MAX_PAGE_TOKEN_CHARS: usize = 256;

impl FieldViolations {
    /// A required id or token: trimmed, 1 to [`MAX_ID_CHARS`] characters, no control
    /// characters.
    pub fn id(&mut self, field: &str, value: &str) -> String {
        let value = self.required(field, value);
        self.bounded(field, &value, MAX_ID_CHARS);
        value
    }

    /// A required car number: 1 to [`MAX_CAR_NUMBER_CHARS`] ASCII letters, digits or dashes.
    pub fn car_number(&mut self, field: &str, value: &str) -> String {
        let value = self.required(field, value);
        let well_formed = value.chars().count() <= MAX_CAR_NUMBER_CHARS
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !value.is_empty() && !well_formed {
            self.add(
                field,
                format!("must be 1 to {MAX_CAR_NUMBER_CHARS} letters, digits or dashes"),
            );
        }
        value
    }

    /// Required text of at most `max` characters without control characters.
    pub fn required_text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = self.required(field, value);
        self.bounded(field, &value, max);
        value
    }

    /// Optional text of at most `max` characters without control characters.
    pub fn optional_text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        self.bounded(field, value, max);
        value.to_owned()
    }

    /// Records `field` when `value` is longer than `max` characters or holds a control
    /// character, which no id or single-line text needs.
    fn bounded(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
        if value.chars().any(is_control) {
            self.add(field, "must not contain control characters");
        }
    }
}

/// NUL, line breaks and escapes, and the Unicode line separators and direction overrides
/// that would make text read otherwise than it is stored.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &FieldViolations) -> Vec<String> {
        v.iter().map(|(f, _)| f.to_owned()).collect()
    }

    #[test]
    fn ids_are_required_short_and_printable() {
        let mut v = FieldViolations::new();
        assert_eq!(v.id("customer_id", " alice "), "alice");
        assert!(v.is_empty());
        v.id("customer_id", "");
        v.id("request_id", &"x".repeat(MAX_ID_CHARS + 1));
        v.id("reservation_id", "a\0b");
        assert_eq!(fields(&v), ["customer_id", "request_id", "reservation_id"]);
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut v = FieldViolations::new();
        v.id("customer_id", &"é".repeat(MAX_ID_CHARS));
        assert!(v.is_empty());
    }

    #[test]
    fn car_numbers_are_letters_digits_and_dashes() {
        let mut v = FieldViolations::new();
        assert_eq!(v.car_number("car_number", "SHI-1234"), "SHI-1234");
        v.car_number("car_number", "品川 300");
        v.car_number("car_number", &"1".repeat(MAX_CAR_NUMBER_CHARS + 1));
        assert_eq!(fields(&v), ["car_number", "car_number"]);
    }

    #[test]
    fn free_text_may_be_empty_but_not_multi_line() {
        let mut v = FieldViolations::new();
        assert_eq!(v.optional_text("reason", "", MAX_FREE_TEXT_CHARS), "");
        v.optional_text("reason", "line\nbreak", MAX_FREE_TEXT_CHARS);
        v.optional_text("reason", "evil\u{202E}txt.exe", MAX_FREE_TEXT_CHARS);
        assert_eq!(fields(&v), ["reason", "reason"]);
    }
}
