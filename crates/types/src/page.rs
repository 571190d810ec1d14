use crate::{FieldViolations, text::MAX_PAGE_TOKEN_CHARS};

/// Page size when a request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Larger requested sizes are capped to this.
pub const MAX_PAGE_SIZE: u64 = 500;

/// A validated `page_size` / `page_token` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u64,
    /// The sort key of the last item of the previous page.
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(page_size: i32, page_token: &str, violations: &mut FieldViolations) -> Self {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                violations.add("page_size", "must not be negative");
                DEFAULT_PAGE_SIZE
            }
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else if page_token.len() > MAX_PAGE_TOKEN_CHARS {
            violations.add("page_token", "is not a token returned by a previous page");
            None
        } else {
            let decoded = PageToken::decode(page_token);
            if decoded.is_none() {
                violations.add("page_token", "is not a token returned by a previous page");
            }
            decoded
        };
        Self { size, after }
    }
}

/// Opaque page tokens: the last sort key, hex-encoded so clients do not build them by hand.
pub struct PageToken;

impl PageToken {
    pub fn encode(key: &str) -> String {
        key.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(token: &str) -> Option<String> {
        if !token.len().is_multiple_of(2) {
            return None;
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        // A key never holds control characters; PostgreSQL could not even compare one with NUL.
        String::from_utf8(bytes)
            .ok()
            .filter(|key| !key.chars().any(char::is_control))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = PageToken::encode("2026|abc");
        assert_eq!(PageToken::decode(&token).as_deref(), Some("2026|abc"));
        let mut v = FieldViolations::new();
        PageRequest::parse(10, "zz", &mut v);
        assert!(!v.is_empty());
        assert_eq!(PageToken::decode(&PageToken::encode("a\0b")), None);
    }

    #[test]
    fn sizes_default_and_cap() {
        let mut v = FieldViolations::new();
        assert_eq!(PageRequest::parse(0, "", &mut v).size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(9999, "", &mut v).size, MAX_PAGE_SIZE);
        assert!(v.is_empty());
    }
}
