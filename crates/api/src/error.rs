//! Every error the api answers with, and the one place where each becomes an
//! HTTP status and the body `{"error": {"code", "message", "field"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use gateway_domain::FieldError;
use gateway_domain::media_limits::MediaRefusal;
use gateway_domain::rules::admission::Refusal;
use gateway_graph::GraphError;
use gateway_queue::QuotaExceeded;
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
    /// Admission control: the message would wait too long in line.
    #[error("{}", queue_full_message(sender, refusal))]
    QueueFull { sender: String, refusal: Refusal },
    /// The sender is paused (an invalid token, an operator): new messages
    /// are refused rather than piled up.
    #[error("sender {sender} is paused: {reason}")]
    SenderPaused { sender: String, reason: String },
    /// Too many read receipts wait for the sender's owner (no worker is
    /// draining them).
    #[error("too many read receipts wait for sender {sender}; retry later")]
    ReadsWaiting { sender: String },
    /// A file the Cloud API would not take: its type (422) or its size
    /// for that type (413).
    #[error("{0}")]
    MediaRefused(#[from] MediaRefusal),
    /// The body is not multipart/form-data, or it broke off.
    #[error("{0}")]
    MalformedMultipart(String),
    /// Meta does not have the media, or no longer.
    #[error("Meta has no such media for this sender (never, or no longer)")]
    MediaNotFound,
    /// Meta refused a media call, or did not answer it. Meta's message
    /// and code only: never a token or a download URL.
    #[error("the Graph API failed the media call: {0}")]
    Graph(GraphError),
    /// A cancel came too late: the message is being sent, or was.
    #[error("message {id} is {} and can no longer be cancelled", status.as_str())]
    NotCancellable {
        id: String,
        status: gateway_domain::MessageStatus,
    },
    /// Over one of the client's quotas.
    #[error("{}", quota_message(*quota, *retry_after))]
    QuotaExceeded {
        quota: QuotaExceeded,
        retry_after: std::time::Duration,
    },
}

fn queue_full_message(sender: &str, refusal: &Refusal) -> String {
    match refusal {
        Refusal::QueueFull {
            predicted_wait,
            max_wait,
        } => format!(
            "sender {sender} would reach this message in {:.1} s, over its max_queue_seconds \
             for the priority ({} s); retry later",
            predicted_wait.as_secs_f64(),
            max_wait.as_secs()
        ),
        Refusal::ExpiresFirst {
            predicted_wait,
            expires_in,
        } => format!(
            "sender {sender} would reach this message in {:.1} s, after its expires_at \
             ({:.1} s from now)",
            predicted_wait.as_secs_f64(),
            expires_in.as_secs_f64()
        ),
    }
}

fn quota_message(quota: QuotaExceeded, retry_after: std::time::Duration) -> String {
    let which = match quota {
        QuotaExceeded::Rate => "its rate_per_second quota",
        QuotaExceeded::Daily => "its per_day quota (UTC day)",
    };
    format!(
        "the client is over {which}; room again in {:.1} s",
        retry_after.as_secs_f64()
    )
}

/// Seconds to wait before sending to a paused sender again: a pause lasts
/// until someone fixes its cause.
const PAUSED_RETRY_AFTER_SECONDS: u64 = 60;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u64 = 1;
/// The same for a full webhook backlog: it drains at the workers' pace,
/// once they run again, not within a second.
const BACKLOG_RETRY_AFTER_SECONDS: u64 = 60;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MediaRefused(MediaRefusal::Unsupported { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::MediaRefused(MediaRefusal::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedMultipart(_) => StatusCode::BAD_REQUEST,
            Self::MediaNotFound => StatusCode::NOT_FOUND,
            Self::Graph(GraphError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Self::Graph(_) => StatusCode::BAD_GATEWAY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::IdempotencyConflict { .. } | Self::NotCancellable { .. } => StatusCode::CONFLICT,
            Self::InvalidSignature => StatusCode::UNAUTHORIZED,
            Self::Unavailable
            | Self::WebhookNotConfigured
            | Self::WebhookBacklogFull
            | Self::SenderPaused { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::QueueFull { .. } | Self::QuotaExceeded { .. } | Self::ReadsWaiting { .. } => {
                StatusCode::TOO_MANY_REQUESTS
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
            Self::MediaRefused(MediaRefusal::Unsupported { .. }) => "unsupported_media_type",
            Self::MediaRefused(MediaRefusal::TooLarge { .. }) => "media_too_large",
            Self::MalformedMultipart(_) => "malformed_multipart",
            Self::MediaNotFound => "media_not_found",
            Self::Graph(_) => "graph_error",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotFound => "not_found",
            Self::IdempotencyConflict { .. } => "idempotency_conflict",
            Self::NotCancellable { .. } => "not_cancellable",
            Self::InvalidSignature => "invalid_signature",
            Self::WebhookNotConfigured => "webhook_not_configured",
            Self::Unavailable => "unavailable",
            Self::WebhookBacklogFull => "backlog_full",
            Self::QueueFull { .. } => "queue_full",
            Self::SenderPaused { .. } => "sender_paused",
            Self::ReadsWaiting { .. } => "too_many_waiting",
            Self::QuotaExceeded { quota, .. } => quota.code(),
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Forbidden { field, .. } => Some(field),
            Self::Invalid(e) => Some(&e.field),
            Self::IdempotencyConflict { .. } => Some("idempotency_key"),
            Self::QueueFull {
                refusal: Refusal::ExpiresFirst { .. },
                ..
            } => Some("expires_at"),
            Self::InvalidSignature => Some("X-Hub-Signature-256"),
            Self::MediaRefused(_) => Some("file"),
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
        if let Some(map) = error.as_object_mut() {
            if let Some(field) = self.field() {
                map.insert("field".into(), field.into());
            }
            // The state the message stays in, for the caller to act on.
            if let Self::NotCancellable { status, .. } = self {
                map.insert("status".into(), status.as_str().into());
            }
            // A batch item has no header of its own.
            if let Some(seconds) = self.retry_after_seconds() {
                map.insert("retry_after".into(), seconds.into());
            }
        }
        error
    }

    /// When to try again, for `Retry-After`; `None` where retrying the same
    /// request cannot help.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::Unavailable | Self::ReadsWaiting { .. } => Some(RETRY_AFTER_SECONDS),
            Self::WebhookBacklogFull => Some(BACKLOG_RETRY_AFTER_SECONDS),
            Self::SenderPaused { .. } => Some(PAUSED_RETRY_AFTER_SECONDS),
            Self::QueueFull { refusal, .. } => Some(refusal.retry_after_seconds()),
            Self::QuotaExceeded { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({ "error": self.body() }))).into_response();
        if let Some(seconds) = self.retry_after_seconds() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
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
