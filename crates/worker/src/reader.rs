//! Feeds a sender's dispatcher: first every entry still pending in the
//! sender's group (left by a worker that died or handed the sender over),
//! with the retry state recorded for it, then new entries as they arrive.
//! A reader reads only as many entries as its lane has room for (one of
//! `read_ahead` permits per message, held until the message is finished),
//! so a backlog stays in Redis, not in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::Lane;
use gateway_queue::{Delivery, Progress, QueueError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{Worker, unix_ms};

/// A message on its way to the dispatcher.
pub(crate) struct Incoming {
    pub delivery: Delivery,
    pub progress: Progress,
    /// Not before this (a retry's due time, recorded before a handover).
    pub not_before: Instant,
    /// The message's place in its lane's read-ahead, given back when the
    /// message is dropped (finished).
    room: Option<OwnedSemaphorePermit>,
}

const PAUSE_MIN: Duration = Duration::from_millis(100);
/// Reads go over the worker's one multiplexed connection without blocking
/// (a blocking read would need a connection per stream, and their buffers
/// cost more memory than the messages), so an empty stream is polled: soon
/// after it was busy, at most every `IDLE_MAX` once quiet.
const IDLE_MIN: Duration = Duration::from_millis(5);
const IDLE_MAX: Duration = Duration::from_millis(200);
/// How often due scheduled messages are moved into the streams.
const PROMOTION_INTERVAL: Duration = Duration::from_secs(1);
const PAUSE_MAX: Duration = Duration::from_secs(2);

/// Reads one of the sender's streams (`lane`); the transactional reader
/// also moves scheduled messages that are due into their streams.
pub(crate) async fn read_sender(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    lane: Lane,
    out: mpsc::Sender<Box<Incoming>>,
    read_ahead: usize,
    stop: CancellationToken,
) {
    let room = Arc::new(Semaphore::new(read_ahead));
    let pnid = sender.phone_number_id.as_str();
    let mut pause = PAUSE_MIN;
    let mut claimed_all = false;
    let mut cursor = String::from("0-0");
    let mut idle = IDLE_MIN;
    let mut last_promotion: Option<Instant> = None;
    let batch_size = worker.settings.worker.batch_size.min(read_ahead);
    let least = batch_size.div_ceil(2);
    while !stop.is_cancelled() {
        let permits = tokio::select! {
            _ = stop.cancelled() => return,
            permits = take_room(&room, least, batch_size) => permits,
        };
        let Some(mut permits) = permits else { return };
        let count = permits.num_permits();
        let step = async {
            if !claimed_all {
                worker.queue.ensure_group(pnid).await?;
                let (next, entries) = worker
                    .queue
                    .claim_pending(pnid, lane, &worker.consumer, &cursor, count)
                    .await?;
                claimed_all = next == "0-0";
                cursor = next;
                return with_retry_state(&worker, pnid, entries).await;
            }
            let promotion_due = last_promotion.is_none_or(|at| at.elapsed() >= PROMOTION_INTERVAL);
            if lane == Lane::Transactional && promotion_due {
                last_promotion = Some(Instant::now());
                worker
                    .queue
                    .promote_scheduled(pnid, unix_ms(), batch_size)
                    .await?;
            }
            let entries = worker
                .queue
                .read_new(pnid, lane, &worker.consumer, count)
                .await?;
            Ok(fresh(entries))
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = step => result,
        };
        match result {
            Ok(batch) => {
                pause = PAUSE_MIN;
                if batch.is_empty() {
                    // Nothing new: look again soon, less often the longer it stays empty.
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(idle) => {}
                    }
                    idle = (idle * 2).min(IDLE_MAX);
                    continue;
                }
                idle = IDLE_MIN;
                for item in batch {
                    match item {
                        Ok(mut incoming) => {
                            // One permit per message; the rest go back when `permits` drops.
                            incoming.room = permits.split(1);
                            // Boxed: a channel allocates its slots in blocks of 32.
                            if out.send(Box::new(incoming)).await.is_err() {
                                return;
                            }
                        }
                        Err(entry_id) => discard(&worker, pnid, lane, &entry_id).await,
                    }
                }
            }
            Err(error) => {
                tracing::warn!(sender = %sender.name, %error, "reading the queue failed; retrying");
                worker
                    .metrics
                    .redis_errors
                    .with_label_values(&["read"])
                    .inc();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(PAUSE_MAX);
            }
        }
    }
}

type Batch = Vec<Result<Incoming, String>>;

fn fresh(entries: Vec<Result<Delivery, String>>) -> Batch {
    let now = Instant::now();
    entries
        .into_iter()
        .map(|entry| {
            entry.map(|delivery| Incoming {
                // A message queued again after an asynchronous failure carries on.
                progress: delivery.prior,
                delivery,
                not_before: now,
                room: None,
            })
        })
        .collect()
}

/// Claimed entries may have been tried before: carry on from their record.
async fn with_retry_state(
    worker: &Worker,
    pnid: &str,
    entries: Vec<Result<Delivery, String>>,
) -> Result<Batch, QueueError> {
    let deliveries: Vec<&Delivery> = entries.iter().filter_map(|e| e.as_ref().ok()).collect();
    let mut states = worker
        .queue
        .retry_states(pnid, &deliveries)
        .await?
        .into_iter();
    let now = Instant::now();
    let now_ms = unix_ms();
    Ok(entries
        .into_iter()
        .map(|entry| {
            entry.map(|delivery| {
                let state = states.next().unwrap_or_default();
                let wait_ms = state.next_attempt_ms.map_or(0, |due| (due - now_ms).max(0));
                Incoming {
                    delivery,
                    progress: Progress {
                        attempts: state.attempts,
                        fallback_used: state.fallback_used,
                    },
                    not_before: now + Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
                    room: None,
                }
            })
        })
        .collect())
}

async fn discard(worker: &Worker, pnid: &str, lane: Lane, entry_id: &str) {
    tracing::error!(
        entry_id,
        "queue entry is not a gateway message; discarding it"
    );
    if let Err(error) = worker.queue.discard(pnid, lane, entry_id).await {
        tracing::warn!(%error, "discarding a malformed entry failed");
    }
}

/// Waits for room for `least` messages, then takes what else is free, up
/// to `most`; `None` once the semaphore is closed. Waiting for more than
/// one keeps reads in batches: reading each message as its place frees up
/// would cost a Redis call per message.
async fn take_room(
    room: &Arc<Semaphore>,
    least: usize,
    most: usize,
) -> Option<OwnedSemaphorePermit> {
    let least = u32::try_from(least.clamp(1, most.max(1))).unwrap_or(1);
    let mut permits = room.clone().acquire_many_owned(least).await.ok()?;
    let more = room
        .available_permits()
        .min(most.saturating_sub(permits.num_permits()));
    if let Ok(extra) = room
        .clone()
        .try_acquire_many_owned(u32::try_from(more).unwrap_or(0))
    {
        permits.merge(extra);
    }
    Some(permits)
}
