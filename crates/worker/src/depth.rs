//! Keeps the queue depth and oldest-age gauges of every sender current.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Worker;
use crate::unix_ms as now_ms;

const INTERVAL: Duration = Duration::from_secs(5);

pub(crate) async fn report_depths(worker: Arc<Worker>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // A round against an unreachable Redis can take long: never let it
        // hold up a stopping worker.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = report_once(&worker) => {}
        }
    }
}

async fn report_once(worker: &Worker) {
    {
        for sender in &worker.settings.senders {
            match worker.queue.depth(&sender.phone_number_id).await {
                Ok(depth) => {
                    let labels = [sender.name.as_str()];
                    worker
                        .metrics
                        .queue_depth
                        .with_label_values(&labels)
                        .set(depth.length as i64);
                    let age = depth
                        .oldest_ms
                        .map_or(0.0, |ms| (now_ms() - ms).max(0) as f64 / 1000.0);
                    worker
                        .metrics
                        .queue_oldest_age
                        .with_label_values(&labels)
                        .set(age);
                }
                Err(_) => worker
                    .metrics
                    .redis_errors
                    .with_label_values(&["depth"])
                    .inc(),
            }
        }
    }
}
