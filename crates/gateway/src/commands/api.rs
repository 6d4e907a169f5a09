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

/// Runs the api on `listener` until `shutdown`.
pub async fn serve(
    settings: Arc<Settings>,
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = super::queue(&settings)?;
    tracing::info!(listen = %listener.local_addr()?, "api listening");
    let state = AppState::new(settings, queue, metrics);
    let server = gateway_api::serve(listener, state, shutdown.clone());
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
