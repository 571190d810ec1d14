use std::fmt;

/// What is wrong with a request, field by field. Domain validation collects these; they
/// become `google.rpc.BadRequest` details at the gRPC edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldViolations(Vec<(String, String)>);

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` (a proto field path such as `daily_price.currency_code`) is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Records `field` as missing when `value` is blank, and returns the trimmed value.
    pub fn required(&mut self, field: &str, value: &str) -> String {
        let value = value.trim();
        if value.is_empty() {
            self.add(field, "is required");
        }
        value.to_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, the violations otherwise.
    pub fn check<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.iter().map(|(field, why)| format!("{field} {why}")).collect();
        f.write_str(&parts.join("; "))
    }
}
