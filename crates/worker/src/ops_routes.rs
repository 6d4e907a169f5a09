//! The worker's own HTTP routes: `/healthz` (the process runs), `/readyz`
//! (Redis reachable, with the paused senders and why) and `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use gateway_config::Settings;
use gateway_queue::Queue;
use gateway_telemetry::Metrics;
use serde_json::{Value, json};

#[derive(Clone)]
struct Ops {
    queue: Queue,
    settings: Arc<Settings>,
}

pub fn ops_router(queue: Queue, settings: Arc<Settings>, metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .with_state(Ops { queue, settings })
        .merge(gateway_telemetry::metrics_routes(metrics))
}

/// Ready while Redis answers. A paused sender does not make the worker
/// unready (its other senders still drain); it is listed with its reason.
async fn readyz(State(ops): State<Ops>) -> (StatusCode, Json<Value>) {
    let pnids: Vec<&str> = ops
        .settings
        .senders
        .iter()
        .map(|s| s.phone_number_id.as_str())
        .collect();
    match ops.queue.sender_states(&pnids).await {
        Ok(states) => {
            let paused: Vec<Value> = ops
                .settings
                .senders
                .iter()
                .zip(states)
                .filter_map(|(sender, (_, paused))| {
                    let reason = serde_json::from_str::<Value>(&paused?).unwrap_or(Value::Null);
                    Some(json!({ "sender": sender.name, "reason": reason }))
                })
                .collect();
            (
                StatusCode::OK,
                Json(json!({ "status": "ready", "redis": "ok", "paused_senders": paused })),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "redis": "unreachable" })),
        ),
    }
}
