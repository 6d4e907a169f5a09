//! `gateway worker`: drains the queues until SIGTERM, serving its own
//! `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use gateway_config::{Role, Settings};
use gateway_graph::GraphClient;
use gateway_telemetry::Metrics;
use gateway_worker::Worker;
use tokio_util::sync::CancellationToken;

use super::{bind, load_settings};

pub async fn run(config: &str, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    crate::allocator::return_freed_memory_at_once();
    let mut settings = load_settings(config, Role::Worker)?;
    if let Some(listen) = listen {
        settings.worker.listen = listen;
    }
    let listener = bind(settings.worker.listen, "worker").await?;
    serve(
        Arc::new(settings),
        listener,
        Metrics::new(),
        crate::shutdown::on_signal(),
    )
    .await
}

/// Runs a worker, with its ops routes on `listener`, until `shutdown`.
pub async fn serve(
    settings: Arc<Settings>,
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = super::queue(&settings)?;
    let graph = GraphClient::new(
        &settings.graph.base_url,
        &settings.graph.version,
        settings.graph.timeout,
        settings.worker.max_in_flight,
    )?;
    tracing::info!(listen = %listener.local_addr()?, graph = %settings.graph.base_url, "worker serving ops routes");
    let ops = axum::serve(
        listener,
        gateway_worker::ops_router(queue.clone(), settings.clone(), metrics.clone()),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let ops = tokio::spawn(async move { ops.await });
    Worker::new(settings, queue, graph, metrics)?
        .run(shutdown)
        .await?;
    ops.await??;
    Ok(())
}
