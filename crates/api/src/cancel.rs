//! `DELETE /messages/{id}` and `POST /messages/cancel`: a client takes back
//! a message it sent that is not sent yet (queued, scheduled, held, or
//! waiting for its next attempt), one by id or in bulk by metadata (a
//! campaign that must stop). Exactly one of the cancel and a worker's send
//! wins (see `gateway_queue`'s `cancel` module); a message being sent, or
//! past that, is answered 409 with its state. A cancelled message's status
//! event goes to its callback and the status subscribers, and
//! `gateway_messages_cancelled_total` counts it.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use gateway_domain::{FieldError, MessageId, MessageStatus};
use gateway_queue::{CancelFilter, CancelOutcome, Cancelled};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Client;
use crate::send::unix_ms;
use crate::{ApiError, AppState};

/// The most metadata values a bulk cancel may name.
const FILTER_VALUES_MAX: usize = 16;

/// Messages cancelled per round trip in a bulk cancel.
const CANCEL_PAGE: usize = 500;

/// How often a bulk cancel looks again at the messages that were being sent.
const SETTLE_EVERY: Duration = Duration::from_millis(20);

pub(crate) async fn cancel_one(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Another client's message answers exactly like an unknown one.
    let id = MessageId::parse(&id).ok_or(ApiError::NotFound)?;
    let record = state.queue.message(&id).await?.ok_or(ApiError::NotFound)?;
    if !client.sees(id.phone_number_id(), &record.client) {
        return Err(ApiError::NotFound);
    }
    match state.queue.cancel(&id, unix_ms()).await? {
        CancelOutcome::Cancelled(cancelled) => announce(&state, &cancelled, "request").await,
        CancelOutcome::Already => {}
        CancelOutcome::NotCancellable(status) => {
            return Err(ApiError::NotCancellable {
                id: id.as_str().to_owned(),
                status,
            });
        }
        CancelOutcome::Missing => return Err(ApiError::NotFound),
    }
    Ok(Json(json!({ "id": id.as_str(), "status": "cancelled" })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// The sender (name or phone_number_id) whose messages to cancel;
    /// required when the client may use several.
    from: Option<String>,
    /// The values the messages' `metadata` must have, each key with the
    /// same value (string, number or boolean), 1 to 16 of them.
    #[schema(value_type = Object)]
    metadata: Option<Map<String, Value>>,
}

/// What a bulk cancel did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    cancelled: u64,
    /// Sent before the cancel reached them, or still being sent when it
    /// gave up waiting.
    sent_meanwhile: u64,
}

pub(crate) async fn cancel_matching(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<CancelBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::MalformedJson(e.body_text()))?;
    let metadata = filter_values(body.metadata)?;
    let pnid = state.one_sender(&client, body.from.as_deref())?;
    let filter = CancelFilter {
        client: client.owner_filter(),
        metadata,
    };
    let ids = state
        .queue
        .waiting_matching(&pnid, &filter, unix_ms())
        .await?;
    let mut tally = Tally::default();
    let mut sending = Vec::new();
    for page in ids.chunks(CANCEL_PAGE) {
        sending.extend(cancel_page(&state, page, &mut tally).await?);
    }
    // Those being sent end within a Graph call: wait for them, so that
    // nothing this cancel matched is sent after its answer. One that
    // failed its attempt and waits for the next is cancelled then.
    let give_up = Instant::now() + state.settings.graph.timeout + Duration::from_secs(1);
    while !sending.is_empty() && Instant::now() < give_up {
        tokio::time::sleep(SETTLE_EVERY).await;
        sending = cancel_page(&state, &sending, &mut tally).await?;
    }
    tally.sent_meanwhile += sending.len() as u64;
    Ok(Json(json!({
        "cancelled": tally.cancelled,
        "sent_meanwhile": tally.sent_meanwhile,
    })))
}

/// Cancels `ids`, counting what came of it; returns those being sent.
async fn cancel_page(
    state: &AppState,
    ids: &[MessageId],
    tally: &mut Tally,
) -> Result<Vec<MessageId>, ApiError> {
    let outcomes = state.queue.cancel_all(ids, unix_ms()).await?;
    let mut sending = Vec::new();
    for (id, outcome) in ids.iter().zip(outcomes) {
        match outcome {
            CancelOutcome::Cancelled(cancelled) => {
                tally.cancelled += 1;
                announce(state, &cancelled, "bulk").await;
            }
            CancelOutcome::NotCancellable(MessageStatus::Sending) => sending.push(id.clone()),
            CancelOutcome::NotCancellable(
                MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Read,
            ) => tally.sent_meanwhile += 1,
            // Cancelled before, failed or expired meanwhile, or gone.
            _ => {}
        }
    }
    Ok(sending)
}

/// Counts a cancel and sends its status event. The cancel stands if the
/// event cannot be stored (Redis went away meanwhile): that is logged.
async fn announce(state: &AppState, cancelled: &Cancelled, by: &str) {
    let Some(sender) = state.sender(cancelled.id.phone_number_id()) else {
        return;
    };
    state
        .metrics
        .cancelled
        .with_label_values(&[sender.name.as_str(), by])
        .inc();
    if let Err(error) = state.notifier.cancelled(sender, cancelled, unix_ms()).await {
        tracing::warn!(message_id = %cancelled.id, %error, "could not queue the cancelled event");
    }
}

/// The metadata a bulk cancel matches: 1 to [`FILTER_VALUES_MAX`] keys,
/// each with a string, number or boolean.
fn filter_values(metadata: Option<Map<String, Value>>) -> Result<Map<String, Value>, FieldError> {
    let metadata = metadata.ok_or_else(|| FieldError::missing("metadata"))?;
    if metadata.is_empty() || metadata.len() > FILTER_VALUES_MAX {
        return Err(FieldError::invalid(
            "metadata",
            format!("must name 1 to {FILTER_VALUES_MAX} values to match"),
        ));
    }
    if let Some((key, _)) = metadata
        .iter()
        .find(|(_, value)| !(value.is_string() || value.is_number() || value.is_boolean()))
    {
        return Err(FieldError::invalid(
            format!("metadata.{key}"),
            "must be a string, number or boolean",
        ));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Option<Map<String, Value>> {
        value.as_object().cloned()
    }

    #[test]
    fn a_bulk_cancel_names_one_to_sixteen_scalar_values() {
        assert!(
            filter_values(object(
                json!({"campaign": "spring", "wave": 2, "vip": true})
            ))
            .is_ok()
        );
        assert_eq!(
            filter_values(None).err().map(|e| e.field),
            Some("metadata".into())
        );
        assert!(filter_values(object(json!({}))).is_err());
        let too_many: Map<String, Value> = (0..=FILTER_VALUES_MAX)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert!(filter_values(Some(too_many)).is_err());
        assert_eq!(
            filter_values(object(json!({"campaign": {"name": "spring"}})))
                .err()
                .map(|e| e.field),
            Some("metadata.campaign".into())
        );
        assert!(filter_values(object(json!({"campaign": null}))).is_err());
    }
}
