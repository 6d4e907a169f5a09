//! The worker: drains each sender's queue through the Graph API and records
//! what became of every message.
//!
//! One task per sender reads its stream through the `workers` consumer group
//! (a dedicated connection for the blocking read), sends up to
//! `worker.max_in_flight_per_sender` messages at once, and records each
//! outcome together with the acknowledgement in one script. A worker also
//! serves `/healthz`, `/readyz` and `/metrics` on its own address.

mod depth;
mod drain;
mod ops_routes;

pub use ops_routes::ops_router;

use std::sync::Arc;
use std::time::Duration;

use gateway_config::Settings;
use gateway_graph::GraphClient;
use gateway_queue::Queue;
use gateway_telemetry::Metrics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What every sender task of a worker shares.
pub struct Worker {
    pub(crate) settings: Arc<Settings>,
    pub(crate) queue: Queue,
    pub(crate) graph: GraphClient,
    pub(crate) metrics: Metrics,
    /// This worker's consumer name in every sender's group.
    pub(crate) consumer: String,
}

/// How long a blocking read waits before checking for shutdown.
const READ_BLOCK: Duration = Duration::from_secs(1);

impl Worker {
    pub fn new(
        settings: Arc<Settings>,
        queue: Queue,
        graph: GraphClient,
        metrics: Metrics,
    ) -> Self {
        Self {
            settings,
            queue,
            graph,
            metrics,
            consumer: consumer_name(),
        }
    }

    /// Drains every configured sender until `shutdown` is cancelled, then
    /// lets each sender finish the batch it holds.
    pub async fn run(self, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        tracing::info!(consumer = %worker.consumer, senders = worker.settings.senders.len(), "worker started");
        let mut tasks = JoinSet::new();
        for sender in &worker.settings.senders {
            tasks.spawn(drain::drain_sender(
                worker.clone(),
                sender.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(depth::report_depths(worker.clone(), shutdown.clone()));
        while let Some(result) = tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a worker task ended abnormally");
            }
        }
        tracing::info!(consumer = %worker.consumer, "worker stopped");
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable in `XINFO CONSUMERS`.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    let suffix = ulid::Ulid::new().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &suffix[suffix.len() - 6..]
    )
}
