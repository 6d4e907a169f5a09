//! The HTTP API internal services call: `POST /send`, `POST /send/batch`,
//! `GET /messages/{id}` (or `?wamid=`), `GET /dead-letters`,
//! `POST /dead-letters/replay`; Meta's `GET|POST /webhook`; plus
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Guarantees: a `202` is answered only after Redis has stored the message
//! (stream entry, record and idempotency key in one script); bad input is
//! answered `4xx` with the field named and stores nothing; when Redis cannot
//! take a message the answer is `503` with `Retry-After`. Errors become HTTP
//! answers in one place, [`error::ApiError`].

mod auth;
mod dead_letters;
mod error;
mod health;
mod messages;
mod send;
mod send_request;
mod state;
mod webhook;

pub use error::ApiError;
pub use state::AppState;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

/// All routes of the api process.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/send", post(send::send_one))
        .route("/send/batch", post(send::send_batch))
        .route("/messages", get(messages::find))
        .route("/messages/{id}", get(messages::show))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/replay", post(dead_letters::replay))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(state.settings.api.max_body_bytes))
        // Meta's payloads may be larger than anything a client sends.
        .merge(
            Router::new()
                .route("/webhook", get(webhook::verify).post(webhook::receive))
                .layer(DefaultBodyLimit::max(state.settings.webhook.max_body_bytes)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
        .merge(gateway_telemetry::metrics_routes(metrics))
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

/// Routes as metric labels: a fixed set, so a scan for unknown paths
/// cannot grow the label space.
const ROUTES: [&str; 9] = [
    "/send",
    "/send/batch",
    "/messages",
    "/messages/{id}",
    "/webhook",
    "/dead-letters",
    "/dead-letters/replay",
    "/healthz",
    "/readyz",
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
