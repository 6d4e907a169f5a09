//! The loop that drains one sender's queue: read a batch, send its messages
//! concurrently, record each outcome with its acknowledgement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gateway_config::SenderSettings;
use gateway_graph::GraphError;
use gateway_queue::{Delivery, Outcome};
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::{READ_BLOCK, Worker};

/// Pause after a Redis error before trying again, doubling up to the cap.
const REDIS_RETRY_MIN: Duration = Duration::from_millis(100);
const REDIS_RETRY_MAX: Duration = Duration::from_secs(2);

pub(crate) async fn drain_sender(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    shutdown: CancellationToken,
) {
    let pnid = sender.phone_number_id.as_str();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut group_ready = false;
    let mut pause = REDIS_RETRY_MIN;
    while !shutdown.is_cancelled() {
        let read = async {
            if !group_ready {
                worker.queue.ensure_group(pnid).await?;
                group_ready = true;
            }
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(worker.queue.blocking_connection(READ_BLOCK).await?),
            };
            worker
                .queue
                .read_new(
                    conn,
                    pnid,
                    &worker.consumer,
                    worker.settings.worker.batch_size,
                    READ_BLOCK,
                )
                .await
        };
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = read => batch,
        };
        match batch {
            Ok(entries) => {
                pause = REDIS_RETRY_MIN;
                let in_flight = worker.settings.worker.max_in_flight_per_sender;
                futures_util::stream::iter(entries)
                    .for_each_concurrent(in_flight, |entry| {
                        let worker = &worker;
                        let sender = &sender;
                        async move {
                            match entry {
                                Ok(delivery) => deliver(worker, sender, delivery).await,
                                Err(entry_id) => discard(worker, pnid, &entry_id).await,
                            }
                        }
                    })
                    .await;
            }
            Err(error) => {
                tracing::warn!(sender = %sender.name, %error, "reading the queue failed; retrying");
                worker
                    .metrics
                    .redis_errors
                    .with_label_values(&["read"])
                    .inc();
                conn = None;
                group_ready = false;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(REDIS_RETRY_MAX);
            }
        }
    }
}

/// Sends one message and records the outcome.
#[tracing::instrument(skip_all, fields(message_id = %delivery.message_id, sender = %sender.name))]
async fn deliver(worker: &Worker, sender: &SenderSettings, delivery: Delivery) {
    let metrics = &worker.metrics;
    let Some(token) = sender.access_token.as_ref() else {
        // Settings for the worker role require a token; this is a bug if reached.
        tracing::error!("sender has no access token; leaving the message queued");
        return;
    };
    let started = Instant::now();
    let result = worker
        .graph
        .send_message(&sender.phone_number_id, token, delivery.graph_body())
        .await;
    let outcome_label = if result.is_ok() { "ok" } else { "error" };
    metrics
        .graph_request_duration
        .with_label_values(&[sender.name.as_str(), outcome_label])
        .observe(started.elapsed().as_secs_f64());

    let now = now_ms();
    let failure;
    let outcome = match &result {
        Ok(accepted) => {
            metrics
                .sent
                .with_label_values(&[sender.name.as_str()])
                .inc();
            let waited = (now - delivery.message_id.accepted_at_ms()).max(0) as f64 / 1000.0;
            metrics
                .accept_to_send
                .with_label_values(&[sender.name.as_str()])
                .observe(waited);
            Outcome::Sent {
                wamid: &accepted.wamid,
            }
        }
        Err(error) => {
            let label = error.metric_label();
            metrics
                .graph_errors
                .with_label_values(&[sender.name.as_str(), &label])
                .inc();
            metrics
                .failed
                .with_label_values(&[sender.name.as_str(), &label])
                .inc();
            tracing::info!(%error, "send failed");
            failure = failure_record(error);
            Outcome::Failed {
                code: failure.0,
                title: &failure.1,
                reason: "graph_error",
            }
        }
    };
    record(worker, sender, &delivery, outcome, now).await;
}

/// The code and title kept on a failed message: Meta's own, or a stand-in
/// for failures before Meta answered (code -1, or the HTTP status).
fn failure_record(error: &GraphError) -> (i64, String) {
    match error {
        GraphError::Meta { code, message, .. } => (*code, message.clone()),
        GraphError::Http { http_status } => (i64::from(*http_status), error.to_string()),
        other => (-1, other.to_string()),
    }
}

/// Records an outcome, retrying while Redis is away: the entry stays pending
/// until this succeeds, so giving up early would strand the message.
async fn record(
    worker: &Worker,
    sender: &SenderSettings,
    delivery: &Delivery,
    outcome: Outcome<'_>,
    now: i64,
) {
    let mut pause = REDIS_RETRY_MIN;
    for attempt in 1..=10 {
        match worker
            .queue
            .complete(
                &sender.phone_number_id,
                delivery,
                1,
                clone_outcome(&outcome),
                now,
            )
            .await
        {
            Ok(()) => return,
            Err(error) => {
                worker
                    .metrics
                    .redis_errors
                    .with_label_values(&["complete"])
                    .inc();
                tracing::warn!(%error, attempt, "recording the outcome failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(REDIS_RETRY_MAX);
            }
        }
    }
    tracing::error!("could not record the outcome; the entry stays pending for recovery");
}

fn clone_outcome<'a>(outcome: &Outcome<'a>) -> Outcome<'a> {
    match *outcome {
        Outcome::Sent { wamid } => Outcome::Sent { wamid },
        Outcome::Failed {
            code,
            title,
            reason,
        } => Outcome::Failed {
            code,
            title,
            reason,
        },
    }
}

async fn discard(worker: &Worker, pnid: &str, entry_id: &str) {
    tracing::error!(
        entry_id,
        "queue entry is not a gateway message; discarding it"
    );
    if let Err(error) = worker.queue.discard(pnid, entry_id).await {
        tracing::warn!(%error, "discarding a malformed entry failed");
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
