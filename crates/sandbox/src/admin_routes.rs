//! The `/admin` routes: the same controls as the Rust API, for tests and
//! demos that run the sandbox as a separate process. JSON in and out, no
//! authentication (the sandbox is a local tool).
//!
//! - `POST /admin/inbound` `{phone_number_id, from, text, age_seconds?}` →
//!   `{wamid}`; `from` is a phone number or a BSUID, `age_seconds` dates the
//!   message that long ago (its window ends 24 h after it); 404 for an
//!   unknown number, 400 for a bad `from` or `text`
//! - `POST /admin/close-window` `{phone_number_id, user}` → `{}`: closes the
//!   user's window until they write again, without a webhook; 404 for an
//!   unknown number, 400 for a bad `user`
//! - `GET|PUT /admin/rules`, `GET|PUT /admin/faults` (periods as
//!   `throttle_for_ms` / `maintenance_for_ms` from now, recipients as
//!   `pair_limited_recipients` / `failing_recipients`),
//!   `GET|PUT /admin/statuses` (delays, quirks, `batch`, and
//!   `answer_after_status_ms`: the answer to a send follows its first status
//!   webhook by that many ms; `conversations`: statuses priced per
//!   conversation, as webhook versions before v24 show them)
//! - `GET|PUT /admin/users` `[{id, not_on_whatsapp?, marketing_opt_out?,
//!   marketing_capped?}, …]`: the whole user directory
//! - `PUT /admin/webhook` `{url, app_secret, …}`, `DELETE /admin/webhook`
//! - `GET /admin/messages[?phone_number_id=…]` → accepted sends in order
//! - `GET /admin/stats`, `POST /admin/reset`
//!
//! A `PUT` replaces the whole setting; fields it leaves out take their
//! defaults (rules on, faults off). A body that does not parse, or names an
//! unknown field, gets `{"error": {"message"}}` with a 4xx status.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::{Rules, StatusConfig, UserConfig, WebhookTarget};
use crate::engine::Engine;
use crate::errors::SandboxError;
use crate::faults::Faults;

pub(crate) fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/admin/inbound", post(inbound))
        .route("/admin/close-window", post(close_window))
        .route("/admin/rules", get(rules).put(set_rules))
        .route("/admin/faults", get(faults).put(set_faults))
        .route("/admin/statuses", get(statuses).put(set_statuses))
        .route("/admin/users", get(users).put(set_users))
        .route("/admin/webhook", put(set_webhook).delete(remove_webhook))
        .route("/admin/messages", get(messages))
        .route("/admin/stats", get(stats))
        .route("/admin/reset", post(reset))
}

/// A JSON body whose rejection (bad JSON, unknown key, wrong type) is
/// answered in JSON too, so scripts can always parse the answer.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(error(rejection.status(), &rejection.body_text())),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inbound {
    phone_number_id: String,
    from: String,
    text: String,
    /// How long ago the user sent it; now when absent.
    #[serde(default)]
    age_seconds: u64,
}

async fn inbound(State(engine): State<Arc<Engine>>, Body(message): Body<Inbound>) -> Response {
    let now = SystemTime::now();
    // An age reaching back before 1970 dates the message at the epoch.
    let at = now
        .checked_sub(Duration::from_secs(message.age_seconds))
        .unwrap_or(UNIX_EPOCH)
        .max(UNIX_EPOCH);
    match engine.receive(&message.phone_number_id, &message.from, &message.text, at) {
        Ok(wamid) => Json(json!({ "wamid": wamid })).into_response(),
        Err(refused) => refusal(&refused),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseWindow {
    phone_number_id: String,
    user: String,
}

async fn close_window(
    State(engine): State<Arc<Engine>>,
    Body(request): Body<CloseWindow>,
) -> Response {
    match engine.close_window(&request.phone_number_id, &request.user) {
        Ok(()) => Json(json!({})).into_response(),
        Err(refused) => refusal(&refused),
    }
}

pub(crate) fn refusal(refused: &SandboxError) -> Response {
    let status = match refused {
        SandboxError::UnknownNumber(_)
        | SandboxError::UnknownToken
        | SandboxError::UnknownTemplate { .. } => StatusCode::NOT_FOUND,
        SandboxError::InvalidUser(_)
        | SandboxError::InvalidText
        | SandboxError::InvalidMedia(_) => StatusCode::BAD_REQUEST,
    };
    error(status, &refused.to_string())
}

async fn rules(State(engine): State<Arc<Engine>>) -> Json<Rules> {
    Json(engine.rules())
}

async fn set_rules(State(engine): State<Arc<Engine>>, Body(rules): Body<Rules>) -> Json<Rules> {
    engine.set_rules(rules);
    Json(rules)
}

async fn faults(State(engine): State<Arc<Engine>>) -> Json<Faults> {
    Json(engine.faults())
}

async fn set_faults(State(engine): State<Arc<Engine>>, Body(faults): Body<Faults>) -> Json<Faults> {
    engine.set_faults(faults.clone());
    Json(faults)
}

async fn statuses(State(engine): State<Arc<Engine>>) -> Json<StatusConfig> {
    Json(engine.webhooks.statuses())
}

async fn set_statuses(
    State(engine): State<Arc<Engine>>,
    Body(statuses): Body<StatusConfig>,
) -> Json<StatusConfig> {
    engine.webhooks.set_statuses(statuses);
    Json(statuses)
}

async fn users(State(engine): State<Arc<Engine>>) -> Json<Vec<UserConfig>> {
    Json(engine.users())
}

async fn set_users(
    State(engine): State<Arc<Engine>>,
    Body(users): Body<Vec<UserConfig>>,
) -> Json<Vec<UserConfig>> {
    engine.set_users(users);
    Json(engine.users())
}

async fn set_webhook(
    State(engine): State<Arc<Engine>>,
    Body(target): Body<WebhookTarget>,
) -> StatusCode {
    engine.webhooks.set_target(Some(target));
    StatusCode::NO_CONTENT
}

async fn remove_webhook(State(engine): State<Arc<Engine>>) -> StatusCode {
    engine.webhooks.set_target(None);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct MessagesQuery {
    phone_number_id: Option<String>,
}

async fn messages(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<MessagesQuery>,
) -> Response {
    Json(engine.accepted(query.phone_number_id.as_deref())).into_response()
}

async fn stats(State(engine): State<Arc<Engine>>) -> Response {
    Json(engine.stats()).into_response()
}

async fn reset(State(engine): State<Arc<Engine>>) -> StatusCode {
    engine.reset();
    StatusCode::NO_CONTENT
}
