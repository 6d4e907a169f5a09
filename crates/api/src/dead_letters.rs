//! `GET /dead-letters` and `POST /dead-letters/replay`: a client's view of
//! the messages it sent that failed for good, and replaying them once the
//! cause is fixed. The same as `gateway dlq`, for services, limited to the
//! client's own messages; an admin client sees and replays every client's,
//! on every sender. Replays go through the dead letters a page at a time.

use axum::Json;
use axum::extract::{Query, State};
use gateway_queue::DeadLetterFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Client;
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this sender (name or phone_number_id); else all of the
    /// client's (an admin's: every sender).
    from: Option<String>,
    /// Only this Meta error code.
    code: Option<i64>,
    /// At most this many (1 to 1,000; default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

pub(crate) async fn list(
    State(state): State<AppState>,
    client: Client,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = DeadLetterFilter {
        code: query.code,
        ids: None,
        client: client.owner_filter(),
    };
    let mut letters = Vec::new();
    for pnid in state.senders_named(&client, query.from.as_deref())? {
        letters.extend(
            state
                .queue
                .dead_letters(&pnid, &filter, limit - letters.len())
                .await?,
        );
        if letters.len() >= limit {
            break;
        }
    }
    Ok(Json(json!({ "dead_letters": letters })))
}

/// Which dead letters to queue again; each filter is optional.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Only this sender (name or phone_number_id); else all of the
    /// client's (an admin's: every sender).
    from: Option<String>,
    /// Only this Meta error code.
    code: Option<i64>,
    /// Only these message ids.
    ids: Option<Vec<String>>,
}

pub(crate) async fn replay(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::MalformedJson(e.body_text()))?;
    let filter = DeadLetterFilter {
        code: request.code,
        ids: request.ids,
        client: client.owner_filter(),
    };
    let mut replayed = 0;
    for pnid in state.senders_named(&client, request.from.as_deref())? {
        replayed += state
            .queue
            .replay_dead_letters(&pnid, &filter, crate::send::unix_ms())
            .await?;
    }
    Ok(Json(json!({ "replayed": replayed })))
}
