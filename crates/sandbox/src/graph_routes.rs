//! The Graph API surface: `POST /{version}/{phone_number_id}/messages`
//! (any version such as `v25.0`), with latency, dropped connections and the
//! 5xx rate applied before the send is decided (faults aimed at one
//! recipient need the parsed body, so the engine applies those). Answers are
//! Meta's: 200 with `contacts` and `messages`, or an error in Meta's shape
//! with its HTTP status. With `StatusConfig::answer_after_status_ms` the 200
//! waits until the message's first status webhook (`sent`, or `failed`) has
//! been posted, and that many ms more, as when Meta's webhook outruns its
//! answer.

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
    // A slow Meta admits (and counts) a send when it arrives and answers
    // late: the latency goes after the handling, so that it does not move
    // the moment the send is counted at.
    let slow = faults.latency();
    let answer_late = || async move {
        if let Some(latency) = slow {
            tokio::time::sleep(latency).await;
        }
    };
    let (parts, body) = request.into_parts();
    match faults.roll(&engine.random) {
        Some(Injected::DropConnection) => {
            answer_late().await;
            return drop_connection(&engine, &parts);
        }
        Some(Injected::ServerError(error)) => {
            answer_late().await;
            return reject(&engine, &error, true);
        }
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
    let answer = engine.send(&phone_number_id, authorization, body);
    answer_late().await;
    match answer {
        Ok(accepted) => {
            if let Some(hold) = accepted.hold {
                hold.wait().await;
            }
            axum::Json(accepted.answer).into_response()
        }
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
