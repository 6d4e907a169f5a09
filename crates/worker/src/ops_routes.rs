//! The worker's own HTTP routes: `/healthz`, `/readyz` (Redis reachable) and
//! `/metrics`.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use gateway_queue::Queue;
use gateway_telemetry::Metrics;

pub fn ops_router(queue: Queue, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route(
            "/readyz",
            get(move || {
                let queue = queue.clone();
                async move {
                    match queue.ping().await {
                        Ok(()) => (StatusCode::OK, "ready"),
                        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
                    }
                }
            }),
        )
        .merge(gateway_telemetry::metrics_routes(metrics))
}
