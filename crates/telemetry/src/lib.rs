//! Observability shared by every process: the Prometheus metric families
//! (registered once, named by Prometheus conventions, labelled by sender and
//! error code, never by recipient or message id), the `/metrics` route, and
//! the `tracing` subscriber.

mod metrics;
mod process;

pub use metrics::Metrics;
pub use process::PROCESS_FAMILY_NAMES;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_routes<S: Clone + Send + Sync + 'static>(metrics: Metrics) -> Router<S> {
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default
/// `info`), JSON lines when `json` is set. Safe to call more than once.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // `try_init` fails only when a subscriber is already set (tests, `dev`).
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
