//! Text messages: a body of 1 to 4,096 characters, and whether WhatsApp may
//! show a preview of the first URL in it.

use serde_json::Value;

use super::fields::Object;
use crate::FieldError;

const BODY_MAX: usize = 4096;

pub(super) fn check(value: &Value, path: &str) -> Result<(), FieldError> {
    let text = Object::new(value, path)?;
    text.string("body", 1..=BODY_MAX)?;
    text.optional_bool("preview_url")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{assert_accepts, assert_rejects};

    #[test]
    fn text_bodies_are_1_to_4096_characters() {
        assert_accepts(&[
            (
                "meta's example",
                json!({"type": "text", "text": {"preview_url": false, "body": "Hello"}}),
            ),
            (
                "no preview_url",
                json!({"type": "text", "text": {"body": "Hello"}}),
            ),
            (
                "4096 ascii",
                json!({"type": "text", "text": {"body": "a".repeat(4096)}}),
            ),
            (
                "4096 emoji is 16384 bytes",
                json!({"type": "text", "text": {"body": "😀".repeat(4096)}}),
            ),
        ]);
        assert_rejects(&[
            (
                "4097",
                json!({"type": "text", "text": {"body": "a".repeat(4097)}}),
                "text.body",
                "too_long",
            ),
            (
                "4097 accented",
                json!({"type": "text", "text": {"body": "é".repeat(4097)}}),
                "text.body",
                "too_long",
            ),
            (
                "empty",
                json!({"type": "text", "text": {"body": ""}}),
                "text.body",
                "empty",
            ),
            (
                "no body",
                json!({"type": "text", "text": {"preview_url": true}}),
                "text.body",
                "missing_field",
            ),
            (
                "body a number",
                json!({"type": "text", "text": {"body": 5}}),
                "text.body",
                "invalid_type",
            ),
            (
                "body null",
                json!({"type": "text", "text": {"body": null}}),
                "text.body",
                "invalid_type",
            ),
            (
                "text a string",
                json!({"type": "text", "text": "Hello"}),
                "text",
                "invalid_type",
            ),
            (
                "preview_url a string",
                json!({"type": "text", "text": {"body": "a", "preview_url": "yes"}}),
                "text.preview_url",
                "invalid_type",
            ),
        ]);
    }

    #[test]
    fn the_limit_is_named_in_the_message() {
        let body = json!({"type": "text", "text": {"body": "a".repeat(4097)}});
        let err = super::super::test_support::parse(&body).expect_err("too long");
        assert_eq!(
            err.message,
            "text.body is 4097 characters; the limit is 4096"
        );
    }
}
