//! `POST /send` and `POST /send/batch`: parse, prepare, store, answer.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use gateway_domain::FieldError;
use gateway_queue::{EnqueueOutcome, Idempotency, NewMessage};
use serde_json::{Map, Value, json};

use crate::auth::Client;
use crate::send_request::{PreparedMessage, SendRequest};
use crate::{ApiError, AppState};
use crate::{admission, media, templates};
pub(crate) use gateway_domain::clock::unix_ms;

pub(crate) async fn send_one(
    State(state): State<AppState>,
    client: Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = json_object(&state, body)?;
    let mut request = SendRequest::parse(&body, &state, &client)?;
    let registries = templates::registries(&state, &[&request]).await?;
    templates::check(&state, &registries, &mut request)?;
    if let Some(Err(expired)) = media::check_media_ids(&state, &[&request], unix_ms())
        .await?
        .pop()
    {
        return Err(expired);
    }
    if let Some(Err(refusal)) = admission::admit(&state, &client, &[&request]).await?.pop() {
        return Err(refusal);
    }
    let prepared = request.prepare();
    let outcome = state
        .queue
        .enqueue(&new_message(&request, &prepared, &client), unix_ms())
        .await
        .inspect_err(|_| state.metrics.redis_failed("enqueue"))?;
    answer(&state, &request, &client, outcome).map(|(status, body)| (status, Json(body)))
}

pub(crate) async fn send_batch(
    State(state): State<AppState>,
    client: Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_object(&state, body)?;
    let items = match body.get("messages") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(
                FieldError::new("messages", "invalid_type", "messages must be an array").into(),
            );
        }
        None => return Err(FieldError::missing("messages").into()),
    };
    let limit = state.settings.api.max_batch_items;
    if items.is_empty() || items.len() > limit {
        return Err(FieldError::new(
            "messages",
            "invalid_length",
            format!(
                "a batch holds 1 to {limit} messages; this one has {}",
                items.len()
            ),
        )
        .into());
    }

    // Parse every item first; only the valid ones that may go now go to
    // Redis, in one pipeline.
    let mut parsed: Vec<BatchItem> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let object = item.as_object().ok_or_else(|| {
                ApiError::from(FieldError::new(
                    format!("messages[{index}]"),
                    "invalid_type",
                    "each message must be an object",
                ))
            })?;
            let request =
                SendRequest::parse(object, &state, &client).map_err(|e| within_item(index, e))?;
            let prepared = request.prepare();
            Ok((request, prepared))
        })
        .collect();
    // Templates against their WABAs' registries (one read per WABA).
    let registries = templates::registries(&state, &still_valid(&parsed)).await?;
    for (index, item) in parsed.iter_mut().enumerate() {
        if let Ok((request, _)) = item
            && let Err(refusal) = templates::check(&state, &registries, request)
        {
            *item = Err(within_item(index, refusal));
        }
    }
    // Media ids this gateway uploaded, against their expiry (one read).
    let verdicts = media::check_media_ids(&state, &still_valid(&parsed), unix_ms()).await?;
    refuse(&mut parsed, verdicts);
    let verdicts = admission::admit(&state, &client, &still_valid(&parsed)).await?;
    refuse(&mut parsed, verdicts);
    let to_store: Vec<NewMessage<'_>> = parsed
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|(request, prepared)| new_message(request, prepared, &client))
        .collect();
    let mut stored = state
        .queue
        .enqueue_batch(&to_store, unix_ms())
        .await
        .inspect_err(|_| state.metrics.redis_failed("enqueue_batch"))?
        .into_iter();

    let results: Vec<Value> = parsed
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let result = match item {
                Err(error) => Err(error.body()),
                Ok((request, _)) => match stored.next() {
                    Some(Ok(outcome)) => answer(&state, request, &client, outcome)
                        .map(|(_, body)| body)
                        .map_err(|e| e.body()),
                    Some(Err(error)) => Err(ApiError::from(error).body()),
                    None => Err(ApiError::Unavailable.body()),
                },
            };
            let mut entry = match result {
                Ok(body) => body,
                Err(error) => json!({ "error": error }),
            };
            if let Some(map) = entry.as_object_mut() {
                map.insert("index".into(), index.into());
            }
            entry
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// One item of a batch: ready to store, or why not.
type BatchItem = Result<(SendRequest, PreparedMessage), ApiError>;

/// The requests of the items still ready, in order.
fn still_valid(parsed: &[BatchItem]) -> Vec<&SendRequest> {
    parsed
        .iter()
        .filter_map(|item| item.as_ref().ok().map(|(request, _)| request))
        .collect()
}

/// Refuses the items still ready whose verdict (one per such item, in
/// order, as a check of [`still_valid`] answers) is a refusal.
fn refuse(parsed: &mut [BatchItem], verdicts: Vec<Result<(), ApiError>>) {
    let mut verdicts = verdicts.into_iter();
    for (index, item) in parsed.iter_mut().enumerate() {
        if item.is_ok()
            && let Some(Err(refusal)) = verdicts.next()
        {
            *item = Err(within_item(index, refusal));
        }
    }
}

/// A field error of item `index` names its field within the batch.
fn within_item(index: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::Invalid(field) => ApiError::Invalid(field.within(&format!("messages[{index}]"))),
        other => other,
    }
}

fn new_message<'a>(
    request: &'a SendRequest,
    prepared: &'a PreparedMessage,
    client: &'a Client,
) -> NewMessage<'a> {
    NewMessage {
        sender_name: &request.sender.name,
        phone_number_id: &request.sender.phone_number_id,
        client: &client.name,
        recipient: request.recipient.key(),
        kind: request.message.kind().as_str(),
        graph_body: &prepared.graph_body,
        fallback_body: prepared.fallback_body.as_deref(),
        metadata: request.metadata.as_deref(),
        idempotency: request.idempotency_key.as_deref().map(|key| Idempotency {
            key,
            fingerprint: &prepared.fingerprint,
        }),
        lane: request.lane,
        send_after_ms: request.send_after_ms,
        expires_at_ms: request.expires_at_ms.map(|ms| ms.to_string()),
        callback_url: request.callback_url.as_deref(),
        template_category: request.template_category,
        fallback_category: request.fallback_category,
        request: &prepared.request_id,
    }
}

fn answer(
    state: &AppState,
    request: &SendRequest,
    client: &Client,
    outcome: EnqueueOutcome,
) -> Result<(StatusCode, Value), ApiError> {
    match outcome {
        EnqueueOutcome::Queued(id) => {
            state
                .metrics
                .accepted
                .with_label_values(&[request.sender.name.as_str()])
                .inc();
            state
                .metrics
                .client_accepted
                .with_label_values(&[client.name.as_str()])
                .inc();
            let status = if id.lane() == gateway_domain::Lane::Scheduled {
                "scheduled"
            } else {
                "queued"
            };
            Ok((
                StatusCode::ACCEPTED,
                json!({ "id": id.as_str(), "status": status }),
            ))
        }
        EnqueueOutcome::Duplicate(first) => Ok((
            StatusCode::OK,
            json!({ "id": first.as_str(), "duplicate": true }),
        )),
        EnqueueOutcome::Conflict(first) => Err(ApiError::IdempotencyConflict {
            first_id: first.to_string(),
        }),
    }
}

/// The body as a JSON object, or the error that says why not.
fn json_object(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.settings.api.max_body_bytes,
            }
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::MalformedJson(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::MalformedJson(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}
