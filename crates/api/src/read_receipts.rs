//! `POST /messages/read`: marks an inbound message read for a service that
//! talks to users (a support bot), optionally with the typing indicator.
//! The api has the message checked (the sender must have received it) and
//! hands it to the sender's owning worker through a short list in Redis:
//! a receipt counts towards the sender's throughput, which only the owner
//! keeps, and goes before the sender's backlog (see
//! `gateway_queue::read_receipts`). Answers 202 once it waits there; the
//! record of messages is not touched, and the outcome is counted in
//! `gateway_read_receipts_total`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gateway_domain::FieldError;
use gateway_queue::ReadRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Client;
use crate::{ApiError, AppState};

/// The longest message id taken (Meta's wamids are about 60 characters).
const MESSAGE_ID_MAX: usize = 256;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadBody {
    /// The sender (name or phone_number_id) that received the message;
    /// required when the client may use several.
    from: Option<String>,
    /// The inbound message's id (`wamid...`), as forwarded to services.
    message_id: Option<String>,
    /// `{"type": "text"}`: also show the typing indicator (Meta clears it
    /// after 25 s or with the sender's next message).
    #[schema(value_type = Option<Object>)]
    typing_indicator: Option<Value>,
}

pub(crate) async fn mark_read(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<ReadBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::MalformedJson(e.body_text()))?;
    let message_id = message_id(body.message_id.as_deref())?;
    let typing = typing(body.typing_indicator.as_ref())?;
    let pnid = state.one_sender(&client, body.from.as_deref())?;
    if !state.queue.inbound_known(&pnid, message_id).await? {
        return Err(ApiError::NotFound);
    }
    let request = ReadRequest {
        message_id: message_id.to_owned(),
        typing,
        at_ms: crate::send::unix_ms(),
    };
    let sender = state
        .sender(&pnid)
        .map_or(pnid.as_str(), |s| s.name.as_str());
    if !state.queue.push_read(&pnid, &request).await? {
        state
            .metrics
            .read_receipts
            .with_label_values(&[sender, "refused"])
            .inc();
        return Err(ApiError::ReadsWaiting {
            sender: sender.to_owned(),
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": message_id, "status": "queued", "typing": typing })),
    ))
}

fn message_id(id: Option<&str>) -> Result<&str, FieldError> {
    let id = id.ok_or_else(|| FieldError::missing("message_id"))?;
    if id.is_empty() || id.len() > MESSAGE_ID_MAX || id.chars().any(|c| c.is_whitespace()) {
        return Err(FieldError::invalid(
            "message_id",
            format!(
                "must be an inbound message's id (wamid), 1 to {MESSAGE_ID_MAX} characters without spaces"
            ),
        ));
    }
    Ok(id)
}

/// Whether the typing indicator goes too: `{"type": "text"}` (Meta's only
/// type), or absent.
fn typing(indicator: Option<&Value>) -> Result<bool, FieldError> {
    match indicator {
        None | Some(Value::Null) => Ok(false),
        Some(value) if value.get("type").and_then(Value::as_str) == Some("text") => {
            match value.as_object().map(|o| o.len()) {
                Some(1) => Ok(true),
                _ => Err(FieldError::invalid(
                    "typing_indicator",
                    "must be {\"type\": \"text\"}",
                )),
            }
        }
        Some(_) => Err(FieldError::invalid(
            "typing_indicator.type",
            "must be \"text\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_is_a_wamid_like_token() {
        assert_eq!(message_id(Some("wamid.HBgL")).ok(), Some("wamid.HBgL"));
        assert_eq!(
            message_id(None).err().map(|e| e.field),
            Some("message_id".into())
        );
        assert!(message_id(Some("")).is_err());
        assert!(message_id(Some("wamid. x")).is_err());
        assert!(message_id(Some(&"w".repeat(MESSAGE_ID_MAX + 1))).is_err());
    }

    #[test]
    fn the_typing_indicator_is_text_or_absent() {
        assert_eq!(typing(None).ok(), Some(false));
        assert_eq!(typing(Some(&json!({"type": "text"}))).ok(), Some(true));
        assert_eq!(
            typing(Some(&json!({"type": "audio"})))
                .err()
                .map(|e| e.field),
            Some("typing_indicator.type".into())
        );
        assert!(typing(Some(&json!({"type": "text", "extra": 1}))).is_err());
        assert!(typing(Some(&json!("text"))).is_err());
    }
}
