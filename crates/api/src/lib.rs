//! The HTTP API internal services call: `POST /send`, `POST /send/batch`,
//! `GET /messages/{id}` (or `?wamid=`), `DELETE /messages/{id}`, `POST
//! /messages/cancel`, `GET /dead-letters`,
//! `POST /dead-letters/replay`, `GET /suppressions`, `DELETE
//! /suppressions/{recipient}`, `GET /windows/{recipient}`, `POST /media`,
//! `GET /media/{media_id}`; Meta's `GET|POST /webhook`; plus
//! `/healthz`, `/readyz` and `/metrics`; and `GET /openapi.json`, the
//! OpenAPI 3.1 document of all of them, generated from [`openapi`] (also as
//! [`openapi_json`], without a server; a copy is checked in at the repo root
//! and a contract test keeps the two equal).
//!
//! Guarantees: a `202` is answered only after Redis has stored the message
//! (stream entry, record and idempotency key in one script); bad input is
//! answered `4xx` with the field named and stores nothing; when Redis cannot
//! take a message the answer is `503` with `Retry-After`. Errors become HTTP
//! answers in one place, [`error::ApiError`].

mod admission;
mod auth;
mod cancel;
mod dead_letters;
mod error;
mod health;
mod media;
mod messages;
pub mod openapi;
mod read_receipts;
mod send;
mod send_request;
mod state;
mod suppressions;
mod templates;
mod webhook;
mod windows;

pub use error::ApiError;
pub use openapi::openapi_json;
pub use state::AppState;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use tokio_util::sync::CancellationToken;

/// All routes of the api process; `/metrics` among them unless
/// `api.metrics_listen` puts it on an address of its own
/// ([`metrics_router`]), where `api.listen` answers it 404.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let metrics_elsewhere = state.settings.api.metrics_listen.is_some();
    let app = Router::new()
        .route(paths::SEND, post(send::send_one))
        .route(paths::SEND_BATCH, post(send::send_batch))
        .route(paths::MESSAGES, get(messages::find))
        .route(
            paths::MESSAGE,
            get(messages::show).delete(cancel::cancel_one),
        )
        .route(paths::MESSAGES_CANCEL, post(cancel::cancel_matching))
        .route(paths::MESSAGES_READ, post(read_receipts::mark_read))
        .route(paths::DEAD_LETTERS, get(dead_letters::list))
        .route(paths::DEAD_LETTERS_REPLAY, post(dead_letters::replay))
        .route(paths::SUPPRESSIONS, get(suppressions::list))
        .route(paths::SUPPRESSION, delete(suppressions::clear))
        .route(paths::WINDOW, get(windows::show))
        .route(paths::HEALTHZ, get(health::healthz))
        .route(paths::READYZ, get(health::readyz))
        .route(paths::OPENAPI, get(openapi::serve))
        .layer(DefaultBodyLimit::max(state.settings.api.max_body_bytes))
        // Meta's payloads may be larger than anything a client sends.
        .merge(
            Router::new()
                .route(paths::WEBHOOK, get(webhook::verify).post(webhook::receive))
                .layer(DefaultBodyLimit::max(state.settings.webhook.max_body_bytes)),
        )
        // The largest file Meta takes, streamed (never held whole).
        .merge(
            Router::new()
                .route(paths::MEDIA, post(media::upload))
                .route(paths::MEDIA_FILE, get(media::download))
                .layer(DefaultBodyLimit::max(
                    gateway_domain::media_limits::MEDIA_MAX_BYTES as usize
                        + media::MULTIPART_OVERHEAD,
                )),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state);
    if metrics_elsewhere {
        app
    } else {
        // Serves `paths::METRICS`.
        app.merge(gateway_telemetry::metrics_routes(metrics))
    }
}

/// `/metrics` alone, for `api.metrics_listen`.
pub fn metrics_router(state: &AppState) -> Router {
    gateway_telemetry::metrics_routes(state.metrics.clone())
}

/// Serves the api on `listener` until `shutdown` is cancelled, then finishes
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Serves [`metrics_router`] on `listener` (`api.metrics_listen`) until
/// `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: &AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The api's paths, named once: the router, [`ROUTES`] and the OpenAPI
/// document use these.
pub mod paths {
    pub const SEND: &str = "/send";
    pub const SEND_BATCH: &str = "/send/batch";
    pub const MESSAGES: &str = "/messages";
    pub const MESSAGE: &str = "/messages/{id}";
    pub const MESSAGES_READ: &str = "/messages/read";
    pub const MESSAGES_CANCEL: &str = "/messages/cancel";
    pub const DEAD_LETTERS: &str = "/dead-letters";
    pub const DEAD_LETTERS_REPLAY: &str = "/dead-letters/replay";
    pub const SUPPRESSIONS: &str = "/suppressions";
    pub const SUPPRESSION: &str = "/suppressions/{recipient}";
    pub const WINDOW: &str = "/windows/{recipient}";
    pub const MEDIA: &str = "/media";
    pub const MEDIA_FILE: &str = "/media/{media_id}";
    pub const WEBHOOK: &str = "/webhook";
    pub const HEALTHZ: &str = "/healthz";
    pub const READYZ: &str = "/readyz";
    pub const METRICS: &str = "/metrics";
    pub const OPENAPI: &str = "/openapi.json";
}

/// Every path the router serves. Also the `route` metric label: a fixed set,
/// so a scan for unknown paths cannot grow the label space (`/metrics`
/// itself is not counted). Each must be described in the OpenAPI document;
/// a test checks it.
pub const ROUTES: [&str; 18] = [
    paths::SEND,
    paths::SEND_BATCH,
    paths::MESSAGES,
    paths::MESSAGE,
    paths::MESSAGES_READ,
    paths::MESSAGES_CANCEL,
    paths::WEBHOOK,
    paths::DEAD_LETTERS,
    paths::DEAD_LETTERS_REPLAY,
    paths::SUPPRESSIONS,
    paths::SUPPRESSION,
    paths::WINDOW,
    paths::MEDIA,
    paths::MEDIA_FILE,
    paths::HEALTHZ,
    paths::READYZ,
    paths::METRICS,
    paths::OPENAPI,
];

async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let route = ROUTES
        .into_iter()
        .find(|r| Some(*r) == matched)
        .unwrap_or("other");
    let response = next.run(request).await;
    state
        .metrics
        .http_responses
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}
