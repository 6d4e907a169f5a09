//! Meta's side of the api: `GET /webhook` answers the verification
//! handshake, `POST /webhook` takes signed events.
//!
//! Guarantees: a POST whose signature does not match a configured app secret
//! is answered 401 and changes nothing; a body that is not a WhatsApp webhook
//! (not JSON, or not shaped like one) is answered 400 and changes nothing; a
//! webhook of another of Meta's products (`object` other than
//! `whatsapp_business_account`: `page`, `instagram`, ...), and one that
//! speaks only of phone numbers this gateway does not serve, is answered 200
//! (Meta retries a 400 for days) and stored nowhere, counted in
//! `gateway_webhook_events_total{kind="not_whatsapp"}` and
//! `{kind="unknown_sender"}`; everything else is stored in the events stream as the raw
//! bytes and answered 200 at once, to be processed by the workers. A 200 is
//! never answered for something not stored (Redis down: 503, Meta retries).
//!
//! The events stream is bounded by `webhook.max_backlog`: a webhook that
//! finds it full (no worker draining it) is answered 503 with `Retry-After`
//! and stored nowhere, counted in `gateway_webhooks_refused_total{reason =
//! "backlog"}`. Meta retries a webhook for days, so nothing is lost while
//! the workers are away, and Redis does not fill up meanwhile.

mod signature;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gateway_domain::webhook::{self, WebhookEvent};
use gateway_queue::EventAdmission;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Handshake {
    /// `subscribe`.
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    /// Must equal the configured verify token.
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    /// Answered back as the whole body.
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// The subscription handshake: the challenge, as the whole body, when the
/// token matches; 403 otherwise.
pub(crate) async fn verify(
    State(state): State<AppState>,
    Query(handshake): Query<Handshake>,
) -> Result<Response, ApiError> {
    let forbidden = || ApiError::Forbidden {
        field: "hub.verify_token",
        message: "the verify token does not match".into(),
    };
    let expected = state
        .settings
        .webhook
        .verify_token
        .as_ref()
        .ok_or_else(forbidden)?;
    let given = handshake.verify_token.unwrap_or_default();
    let token_matches: bool = given
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if handshake.mode.as_deref() != Some("subscribe") || !token_matches {
        return Err(forbidden());
    }
    let challenge = handshake.challenge.unwrap_or_default();
    Ok((StatusCode::OK, challenge).into_response())
}

/// A signed event from Meta: checked, stored, answered.
pub(crate) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: state.settings.webhook.max_body_bytes,
        },
        _ => ApiError::MalformedJson(rejection.body_text()),
    })?;
    let secrets = &state.settings.webhook.app_secrets;
    if secrets.is_empty() {
        return Err(ApiError::WebhookNotConfigured);
    }
    let header = headers.get(signature::HEADER).map(|v| v.as_bytes());
    if let Err(refusal) = signature::check(header, &body, secrets) {
        state
            .metrics
            .webhook_signature_failures
            .with_label_values(&[refusal.as_str()])
            .inc();
        return Err(ApiError::InvalidSignature);
    }
    let events = match webhook::parse(&body) {
        Ok(events) => events,
        Err(webhook::WebhookError::OtherObject(_)) => {
            count(&state, "not_whatsapp");
            return Ok(StatusCode::OK);
        }
        Err(e) => {
            count(&state, "malformed");
            return Err(ApiError::MalformedJson(e.to_string()));
        }
    };
    let ours = |event: &WebhookEvent| {
        let pnid = match event {
            WebhookEvent::Status(s) => Some(&s.phone_number_id),
            WebhookEvent::Inbound(m) => Some(&m.phone_number_id),
            WebhookEvent::Other {
                phone_number_id, ..
            } => phone_number_id.as_ref(),
        };
        // Account-level events (templates, quality) name no number.
        pnid.is_none_or(|id| state.sender(id).is_some())
    };
    if !events.iter().any(ours) {
        count(&state, "unknown_sender");
        return Ok(StatusCode::OK);
    }
    let max_backlog = state.settings.webhook.max_backlog;
    match state
        .queue
        .store_webhook(&body, gateway_domain::clock::unix_ms(), max_backlog)
        .await?
    {
        EventAdmission::Stored => {
            count(&state, "stored");
            Ok(StatusCode::OK)
        }
        EventAdmission::BacklogFull => {
            state
                .metrics
                .webhooks_refused
                .with_label_values(&["backlog"])
                .inc();
            if let Some(also_refused) = state.backlog_warnings.admit() {
                tracing::warn!(
                    max_backlog,
                    also_refused,
                    "the webhook events stream is full (are the workers running?): \
                     answering webhooks 503 until it drains; Meta retries them"
                );
            }
            Err(ApiError::WebhookBacklogFull)
        }
    }
}

fn count(state: &AppState, kind: &str) {
    state
        .metrics
        .webhook_events
        .with_label_values(&[kind])
        .inc();
}
