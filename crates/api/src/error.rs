//! Every error the api answers with, and the one place where each becomes an
//! HTTP status and the body `{"error": {"code", "message", "field"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use gateway_domain::FieldError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The client may not use what it named (a sender).
    #[error("{message}")]
    Forbidden {
        field: &'static str,
        message: String,
    },
    /// The body is not JSON, or not a JSON object.
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON but breaks a rule.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no such message")]
    NotFound,
    #[error("idempotency key already used for another payload, by message {first_id}")]
    IdempotencyConflict { first_id: String },
    /// A webhook POST whose signature matches no configured app secret.
    #[error("the X-Hub-Signature-256 header is missing or does not match")]
    InvalidSignature,
    /// No app secret is configured, so no webhook can be checked.
    #[error("webhooks are not configured on this gateway (no app secret)")]
    WebhookNotConfigured,
    /// Redis did not take or give the data; the caller should retry.
    #[error("the queue is unavailable; retry shortly")]
    Unavailable,
    /// The webhook events stream holds `webhook.max_backlog` entries (the
    /// workers are not draining it); nothing was stored, Meta retries.
    #[error("too many webhook events wait to be processed; retry later")]
    WebhookBacklogFull,
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "1";
/// The same for a full webhook backlog: it drains at the workers' pace,
/// once they run again, not within a second.
const BACKLOG_RETRY_AFTER_SECONDS: &str = "60";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::IdempotencyConflict { .. } => StatusCode::CONFLICT,
            Self::InvalidSignature => StatusCode::UNAUTHORIZED,
            Self::Unavailable | Self::WebhookNotConfigured | Self::WebhookBacklogFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable machine-readable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::MalformedJson(_) => "malformed_json",
            Self::Invalid(e) => e.code,
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotFound => "not_found",
            Self::IdempotencyConflict { .. } => "idempotency_conflict",
            Self::InvalidSignature => "invalid_signature",
            Self::WebhookNotConfigured => "webhook_not_configured",
            Self::Unavailable => "unavailable",
            Self::WebhookBacklogFull => "backlog_full",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Forbidden { field, .. } => Some(field),
            Self::Invalid(e) => Some(&e.field),
            Self::IdempotencyConflict { .. } => Some("idempotency_key"),
            Self::InvalidSignature => Some("X-Hub-Signature-256"),
            _ => None,
        }
    }

    /// The `{"code", "message", "field"}` object (also used per item in batches).
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            Self::Invalid(e) => e.message.clone(),
            other => other.to_string(),
        };
        let mut error = json!({ "code": self.code(), "message": message });
        if let (Some(field), Some(map)) = (self.field(), error.as_object_mut()) {
            map.insert("field".into(), field.into());
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": self.body() }))).into_response();
        let retry_after = match self {
            Self::Unavailable => Some(RETRY_AFTER_SECONDS),
            Self::WebhookBacklogFull => Some(BACKLOG_RETRY_AFTER_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}

impl From<gateway_queue::QueueError> for ApiError {
    fn from(error: gateway_queue::QueueError) -> Self {
        tracing::warn!(%error, "redis operation failed");
        Self::Unavailable
    }
}
