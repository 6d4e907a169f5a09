//! Meta's error shapes: the JSON body of a failed Graph call, the `errors`
//! item of a `failed` status webhook, and the HTTP status and title that go
//! with each code (per Meta's error-code reference). Also `SandboxError`,
//! the error of the sandbox's own Rust API.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One of Meta's errors, before it is rendered as an HTTP answer or a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MetaError {
    pub(crate) status: StatusCode,
    pub(crate) code: i64,
    /// Replaces the usual `(#code) title` message where Meta words it otherwise.
    message: Option<String>,
    pub(crate) details: Cow<'static, str>,
    kind: &'static str,
}

impl MetaError {
    fn new(status: StatusCode, code: i64, details: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: None,
            details: details.into(),
            kind: "OAuthException",
        }
    }

    pub(crate) fn invalid_token() -> Self {
        Self {
            message: Some("Invalid OAuth access token - Cannot parse access token".to_owned()),
            ..Self::new(StatusCode::UNAUTHORIZED, 190, "")
        }
    }

    pub(crate) fn unknown_object(id: &str) -> Self {
        Self {
            message: Some(format!(
                "Unsupported post request. Object with ID '{id}' does not exist, cannot be loaded due to \
                 missing permissions, or does not support this operation. Please read the Graph API \
                 documentation at https://developers.facebook.com/docs/graph-api"
            )),
            kind: "GraphMethodException",
            ..Self::new(StatusCode::BAD_REQUEST, 100, "")
        }
    }

    /// 100 on a read: the object does not exist or the token may not see it.
    pub(crate) fn unknown_read(id: &str) -> Self {
        Self {
            message: Some(format!(
                "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to \
                 missing permissions, or does not support this operation. Please read the Graph API \
                 documentation at https://developers.facebook.com/docs/graph-api"
            )),
            kind: "GraphMethodException",
            ..Self::new(StatusCode::BAD_REQUEST, 100, "")
        }
    }

    /// 190 for a token that has expired (Meta's subcode 463 is no longer sent).
    pub(crate) fn expired_token() -> Self {
        Self {
            message: Some("Error validating access token: Session has expired".to_owned()),
            ..Self::new(StatusCode::UNAUTHORIZED, 190, "")
        }
    }

    /// 200: the token lacks the permission (scope) the call needs.
    pub(crate) fn missing_permission(scope: &str) -> Self {
        Self {
            message: Some(format!(
                "(#200) Requires {scope} permission to manage the object"
            )),
            ..Self::new(StatusCode::FORBIDDEN, 200, "")
        }
    }

    /// 100: a parameter Meta does not accept (wrong type, unknown value, bad length of `text.body`).
    pub(crate) fn invalid_parameter(details: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 100, details)
    }

    /// 131008: a required part of the message is missing.
    pub(crate) fn missing_parameter(details: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 131_008, details)
    }

    /// 131053: the uploaded file cannot be taken (too large for its type).
    pub(crate) fn media_upload(details: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 131_053, details)
    }

    /// 131009: a value is outside Meta's limits for it.
    pub(crate) fn invalid_value(details: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 131_009, details)
    }

    pub(crate) fn throttled(http_429: bool) -> Self {
        let status = if http_429 {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::BAD_REQUEST
        };
        Self::new(
            status,
            130_429,
            "Cloud API message throughput has been reached.",
        )
    }

    pub(crate) fn pair_limited() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            131_056,
            "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
        )
    }

    pub(crate) fn maintenance() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            131_057,
            "Business account is in maintenance mode.",
        )
    }

    pub(crate) fn window_closed() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            131_047,
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        )
    }

    pub(crate) fn template_missing(name: &str, language: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            132_001,
            format!("template name ({name}) does not exist in {language}"),
        )
    }

    pub(crate) fn template_parameters(expected: usize, got: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            132_000,
            format!(
                "body: number of localizable_params ({got}) does not match the expected number of params ({expected})"
            ),
        )
    }

    pub(crate) fn template_paused(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            132_015,
            format!("Template {name} is paused due to low quality."),
        )
    }

    pub(crate) fn template_disabled(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            132_016,
            format!("Template {name} has been disabled."),
        )
    }

    pub(crate) fn undeliverable() -> Self {
        Self::new(StatusCode::OK, 131_026, "Message Undeliverable.")
    }

    pub(crate) fn marketing_capped() -> Self {
        Self::new(
            StatusCode::OK,
            131_049,
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        )
    }

    pub(crate) fn marketing_opt_out() -> Self {
        Self::new(
            StatusCode::OK,
            131_050,
            "The recipient has stopped marketing messages from this business.",
        )
    }

    pub(crate) fn unknown() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 1, "")
    }

    pub(crate) fn service_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, 2, "")
    }

    pub(crate) fn title(&self) -> &'static str {
        title(self.code)
    }

    fn message(&self) -> Cow<'_, str> {
        match &self.message {
            Some(message) => Cow::Borrowed(message),
            None => Cow::Owned(format!("(#{}) {}", self.code, self.title())),
        }
    }

    /// The body of the HTTP answer, as the Graph API sends it.
    pub(crate) fn body(&self, fbtrace_id: &str) -> Value {
        let mut error = json!({
            "message": self.message(),
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": fbtrace_id,
        });
        if !self.details.is_empty() {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": self.details});
        }
        json!({ "error": error })
    }

    pub(crate) fn response(&self, fbtrace_id: &str) -> Response {
        (self.status, axum::Json(self.body(fbtrace_id))).into_response()
    }

    /// The item of a `failed` status's `errors` array.
    pub(crate) fn status_error(&self) -> Value {
        json!({
            "code": self.code,
            "title": self.title(),
            "message": self.title(),
            "error_data": {"details": self.details},
        })
    }
}

fn title(code: i64) -> &'static str {
    match code {
        1 => "An unknown error occurred",
        2 => "Service temporarily unavailable",
        100 => "Invalid parameter",
        190 => "Invalid OAuth access token",
        130_429 => "Rate limit hit",
        131_008 => "Required parameter is missing",
        131_009 => "Parameter value is not valid",
        131_053 => "Media upload error",
        131_026 => "Message undeliverable",
        131_047 => "Re-engagement message",
        131_049 => "This message was not delivered to maintain healthy ecosystem engagement.",
        131_050 => {
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business."
        }
        131_056 => "(Business Account, Consumer Account) pair rate limit hit",
        131_057 => "Account in maintenance mode",
        132_000 => "Number of parameters does not match the expected number of params",
        132_001 => "Template name does not exist in the translation",
        132_015 => "Template is Paused",
        132_016 => "Template is Disabled",
        _ => "Unknown error",
    }
}

/// Why a call to the sandbox's own API failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SandboxError {
    #[error("unknown phone_number_id {0:?}")]
    UnknownNumber(String),
    #[error("{0:?} is neither a phone number nor a business-scoped user id")]
    InvalidUser(String),
    #[error("the text must be 1 to 4096 characters")]
    InvalidText,
    #[error("invalid media: {0}")]
    InvalidMedia(String),
    #[error("no configured number has this access token")]
    UnknownToken,
    #[error("no template {name:?} in language {language:?} is registered")]
    UnknownTemplate { name: String, language: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_error_has_metas_shape() {
        let body = MetaError::throttled(false).body("Abc");
        assert_eq!(
            body,
            json!({"error": {
                "message": "(#130429) Rate limit hit",
                "type": "OAuthException",
                "code": 130429,
                "error_data": {"messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."},
                "fbtrace_id": "Abc"
            }})
        );
        assert_eq!(
            MetaError::throttled(true).status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn statuses_per_code_follow_meta() {
        assert_eq!(MetaError::invalid_token().status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            MetaError::template_missing("x", "en").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            MetaError::unknown_object("1").status,
            StatusCode::BAD_REQUEST
        );
        let token = MetaError::invalid_token().body("t");
        assert_eq!(token["error"]["code"], 190);
        assert!(token["error"].get("error_data").is_none());
    }

    #[test]
    fn status_error_item_has_code_title_message_and_details() {
        let item = MetaError::undeliverable().status_error();
        assert_eq!(item["code"], 131026);
        assert_eq!(item["title"], "Message undeliverable");
        assert_eq!(item["message"], "Message undeliverable");
        assert_eq!(item["error_data"]["details"], "Message Undeliverable.");
    }
}
