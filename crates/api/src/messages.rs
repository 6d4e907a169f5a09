//! `GET /messages/{id}` and `GET /messages?wamid=…`: a message's current
//! state and its history, for the client that sent it (or an admin client).
//! Anyone else's message is answered 404, exactly like an unknown one.

use axum::Json;
use axum::extract::{Path, Query, State};
use gateway_domain::MessageId;
use gateway_queue::MessageRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Client;
use crate::{ApiError, AppState};

pub(crate) async fn show(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // An id the client may not see answers exactly like an unknown one.
    let id = MessageId::parse(&id).ok_or(ApiError::NotFound)?;
    if !client.admin && !client.may_use(id.phone_number_id()) {
        return Err(ApiError::NotFound);
    }
    let record = state.queue.message(&id).await?.ok_or(ApiError::NotFound)?;
    visible(&client, record).map(|record| Json(render(record)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ByWamid {
    /// Meta's id of the message (`wamid....`).
    wamid: String,
}

/// The message Meta knows by this wamid, among the senders the client may
/// use (an admin: every sender), if the client may see it.
pub(crate) async fn find(
    State(state): State<AppState>,
    client: Client,
    Query(query): Query<ByWamid>,
) -> Result<Json<Value>, ApiError> {
    let id = state
        .queue
        .find_by_wamid(&state.senders_seen_by(&client), &query.wamid)
        .await?
        .ok_or(ApiError::NotFound)?;
    let record = state.queue.message(&id).await?.ok_or(ApiError::NotFound)?;
    visible(&client, record).map(|record| Json(render(record)))
}

/// The record, if `client` may see it; another client's message is not
/// found, exactly like an unknown id.
fn visible(client: &Client, record: MessageRecord) -> Result<MessageRecord, ApiError> {
    if client.sees(record.id.phone_number_id(), &record.client) {
        Ok(record)
    } else {
        Err(ApiError::NotFound)
    }
}

fn render(record: MessageRecord) -> Value {
    let history: Vec<Value> = serde_json::from_str::<Vec<Value>>(&record.history)
        .unwrap_or_default()
        .into_iter()
        .map(with_rfc3339_time)
        .collect();
    let mut body = json!({
        "id": record.id.as_str(),
        "status": record.status.as_str(),
        "from": record.sender,
        "to": record.recipient.key(),
        "type": record.kind.as_str(),
        "attempts": record.attempts,
        "fallback_used": record.fallback_used,
        "created_at": rfc3339(record.created_ms),
        "updated_at": rfc3339(record.updated_ms),
        "history": history,
    });
    if let Some(map) = body.as_object_mut() {
        if let Some(wamid) = record.wamid {
            map.insert("wamid".into(), wamid.into());
        }
        if let Some(code) = record.error_code {
            map.insert(
                "error".into(),
                json!({ "code": code, "title": record.error_title }),
            );
        }
        if let Some(metadata) = record
            .metadata
            .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        {
            map.insert("metadata".into(), metadata);
        }
    }
    body
}

/// History events are stored with `at_ms`; callers get RFC 3339 `at`.
fn with_rfc3339_time(mut event: Value) -> Value {
    if let Some(map) = event.as_object_mut()
        && let Some(ms) = map.remove("at_ms").and_then(|v| v.as_i64())
    {
        map.insert("at".into(), rfc3339(ms).into());
    }
    event
}

pub(crate) fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
