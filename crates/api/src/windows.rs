//! `GET /windows/{recipient}?from=SENDER`: whether the recipient's 24-hour
//! window is open as far as the gateway knows (from their inbound
//! messages), and until when, so a service can choose a free-form message
//! or a template itself (for example to tell an agent that only templates
//! are possible).

use axum::Json;
use axum::extract::{Path, Query, State};
use gateway_domain::rules::window;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Client;
use crate::state::recipient_in_path;
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// The sender (name or phone_number_id); required when the client may
    /// use several.
    from: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    client: Client,
    Path(recipient): Path<String>,
    Query(query): Query<WindowQuery>,
) -> Result<Json<Value>, ApiError> {
    let pnid = state.one_sender(&client, query.from.as_deref())?;
    let recipient = recipient_in_path(&recipient)?;
    let opened = state.queue.window_opened_at(&pnid, recipient.key()).await?;
    let now = crate::send::unix_ms();
    let until = opened.map(window::closes_at).filter(|&closes| closes > now);
    Ok(Json(json!({
        "recipient": recipient.key(),
        "open": until.is_some(),
        "until": until.map(crate::messages::rfc3339),
    })))
}
