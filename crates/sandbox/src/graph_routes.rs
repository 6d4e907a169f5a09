//! The Graph API surface: `POST /{version}/{phone_number_id}/messages`
//! (any version such as `v25.0`), with latency, dropped connections and the
//! 5xx rate applied before the send is decided (faults aimed at one
//! recipient need the parsed body, so the engine applies those). Answers are
//! Meta's: 200 with `contacts` and `messages`, or an error in Meta's shape
//! with its HTTP status.

use std::sync::Arc;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION};
use axum::http::{HeaderValue, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::connection::ConnectionCut;
use crate::engine::Engine;
use crate::errors::MetaError;
use crate::faults::Injected;
use crate::ids::fbtrace_id;
use crate::stats::Event;

/// Largest request body read; Meta's own limit is not documented, and no
/// valid message comes near it.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

pub(crate) fn routes() -> Router<Arc<Engine>> {
    Router::new().route("/{version}/{phone_number_id}/messages", post(send_message))
}

async fn send_message(
    State(engine): State<Arc<Engine>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let faults = engine.active_faults();
    if let Some(latency) = faults.latency() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = request.into_parts();
    match faults.roll(&engine.random) {
        Some(Injected::DropConnection) => return drop_connection(&engine, &parts),
        Some(Injected::ServerError(error)) => return reject(&engine, &error, true),
        None => {}
    }
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return reject(
            &engine,
            &MetaError::invalid_parameter("The request body is too large"),
            true,
        );
    };
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match engine.send(&phone_number_id, authorization, body) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => reject(&engine, &error, false),
    }
}

/// Answers with Meta's error; `count` for errors the engine did not count.
fn reject(engine: &Engine, error: &MetaError, count: bool) -> Response {
    if count {
        engine.count(Event::Rejected(error.code));
    }
    error.response(&fbtrace_id(&engine.random))
}

fn drop_connection(engine: &Engine, parts: &Parts) -> Response {
    engine.count(Event::ConnectionDropped);
    match parts.extensions.get::<ConnectInfo<ConnectionCut>>() {
        Some(ConnectInfo(cut)) => {
            cut.cut();
            // Never reaches the client: the write of it fails and the
            // connection closes.
            MetaError::unknown().response("")
        }
        None => {
            // Served by someone else's server (`Sandbox::router`), the
            // connection cannot be cut; the closest is an error that closes it.
            let mut response = MetaError::unknown().response(&fbtrace_id(&engine.random));
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
