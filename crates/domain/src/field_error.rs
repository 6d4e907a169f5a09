//! The one error type for input that breaks a rule: which field, a stable
//! machine-readable code, and a sentence for the person who sent it.

use std::borrow::Cow;

/// A problem with one field of a request. `field` is a dotted path into the
/// request body (`text.body`, `interactive.action.buttons[3]`), so a caller
/// can find it without reading the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: Cow<'static, str>,
    /// Stable, snake_case: `missing_field`, `too_long`, `invalid_value`, ...
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    pub fn missing(field: impl Into<Cow<'static, str>>) -> Self {
        let field = field.into();
        let message = format!("{field} is required");
        Self::new(field, "missing_field", message)
    }

    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(field, "invalid_value", message)
    }

    /// Prefixes the field path, so that nested parsers can report paths
    /// relative to what they were given.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            Cow::Owned(parent.to_owned())
        } else {
            Cow::Owned(format!("{parent}.{}", self.field))
        };
        self
    }
}
