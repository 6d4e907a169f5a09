//! `gateway api`: serves the HTTP API until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_api::AppState;
use gateway_config::{Role, Settings};
use gateway_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use super::{bind, load_settings};

/// How long a stopping api waits for the requests it holds: each needs at
/// most one Redis round trip (bounded by `redis.response_timeout_ms`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(config: &str, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut settings = load_settings(config, Role::Api)?;
    if let Some(listen) = listen {
        settings.api.listen = listen;
    }
    let listener = bind(settings.api.listen, "api").await?;
    serve(
        Arc::new(settings),
        listener,
        Metrics::new(),
        crate::shutdown::on_signal(),
    )
    .await
}

/// Runs the api on `listener` until `shutdown`, and its `/metrics` on
/// `api.metrics_listen` when that is set (then not on `listener`).
pub async fn serve(
    settings: Arc<Settings>,
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = super::queue(&settings)?;
    let metrics_listener = match settings.api.metrics_listen {
        Some(addr) => Some(bind(addr, "api's /metrics").await?),
        None => None,
    };
    match &metrics_listener {
        Some(metrics_listener) => tracing::info!(
            listen = %listener.local_addr()?,
            metrics_listen = %metrics_listener.local_addr()?,
            "api listening"
        ),
        None => tracing::info!(listen = %listener.local_addr()?, "api listening"),
    }
    let state = AppState::new(settings, queue, metrics)?;
    let metrics_server = {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        async move {
            match metrics_listener {
                Some(listener) => gateway_api::serve_metrics(listener, &state, shutdown).await,
                None => Ok(()),
            }
        }
    };
    let api_server = gateway_api::serve(listener, state, shutdown.clone());
    let server = async {
        let (api, metrics) = tokio::join!(api_server, metrics_server);
        api.and(metrics)
    };
    // After the signal the api stops accepting and finishes the requests it
    // holds; a client that never completes its request must not keep the
    // process alive.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served?,
        () = deadline => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the shutdown grace; stopping anyway");
        }
    }
    tracing::info!("api stopped");
    Ok(())
}
