//! `GET /suppressions` and `DELETE /suppressions/{recipient}`: the
//! recipients a sender will not message now (opted out of marketing,
//! marketing-capped, not on WhatsApp), and clearing one, for the senders
//! the client may use. The same as `gateway suppressions`, for services.

use axum::Json;
use axum::extract::{Path, Query, State};
use gateway_domain::rules::suppression::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Client;
use crate::state::recipient_in_path;
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The sender (name or phone_number_id); required when the client may
    /// use several.
    from: Option<String>,
    /// Where the previous page ended (`next_cursor`); 0 or absent to start.
    cursor: Option<u64>,
    /// Entries to look through for this page (1 to 1,000; default 100).
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
    let pnid = state.one_sender(&client, query.from.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let (page, next) = state
        .queue
        .suppressions(
            &pnid,
            query.cursor.unwrap_or(0),
            limit,
            crate::send::unix_ms(),
        )
        .await?;
    Ok(Json(json!({ "suppressions": page, "next_cursor": next })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ClearQuery {
    /// The sender (name or phone_number_id); required when the client may
    /// use several.
    from: Option<String>,
    /// `marketing` or `all`; absent: both.
    scope: Option<String>,
}

pub(crate) async fn clear(
    State(state): State<AppState>,
    client: Client,
    Path(recipient): Path<String>,
    Query(query): Query<ClearQuery>,
) -> Result<Json<Value>, ApiError> {
    let pnid = state.one_sender(&client, query.from.as_deref())?;
    let recipient = recipient_in_path(&recipient)?;
    let scope = match query.scope.as_deref() {
        None => None,
        Some(text) => Some(Scope::parse(text).ok_or_else(|| {
            gateway_domain::FieldError::invalid("scope", "scope must be \"marketing\" or \"all\"")
        })?),
    };
    let cleared = state
        .queue
        .clear_suppression(&pnid, recipient.key(), scope, |_| true)
        .await?;
    if cleared == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(Json(
        json!({ "recipient": recipient.key(), "cleared": cleared }),
    ))
}
