//! `gateway api`: serves the HTTP API until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use gateway_api::AppState;
use gateway_config::{Role, Settings};
use gateway_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use super::{bind, load_settings};

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
    gateway_api::serve(listener, state, shutdown).await?;
    Ok(())
}
