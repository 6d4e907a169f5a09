//! The Redis side of one sender's dispatcher: each step the state machine
//! asks for (take over, read, park, unpark, promote scheduled messages,
//! arm the wake-ups, read the lease and pause flag, take the read
//! receipts the api queued) as one async call. A
//! sender runs one step at a time, so a step's result is applied before
//! the next one is sent: a read never races a park of the same recipient.
//!
//! A step that fails marks its stream's consumer uncertain: the next step
//! of that stream is a reconciliation (see `gateway_queue::consumer`), so
//! entries a failed step may have left pending for this worker are found
//! again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::Lane;
use gateway_queue::{
    Claim, Consumer, Delivery, PARKED_CONSUMER, ParkedSummary, Progress, QueueError, ReadRequest,
    UnparkLimits, keys,
};
use redis::streams::StreamId;
use tokio::sync::Notify;

use crate::sender_state::{HeldMessage, ParkRequest};
use crate::{Worker, unix_ms};

/// Scheduled messages moved into the streams per step.
const PROMOTE_BATCH: usize = 500;

/// What the dispatcher asks of Redis.
pub(crate) enum Step {
    /// Read the lease holder, the pause flag and the number's quality
    /// rating, and be woken when any of them changes.
    Control,
    /// What is parked for both streams.
    Summary,
    /// Entries to take over or reconcile for `lane`.
    Claim {
        lane: Lane,
        count: usize,
        held: HashSet<String>,
        routed: bool,
    },
    Read {
        lane: Lane,
        count: usize,
        routed: bool,
    },
    Park(Vec<ParkRequest>),
    Unpark {
        lane: Lane,
        limits: UnparkLimits,
    },
    /// Be woken when the scheduled set changes, then move its due messages
    /// into the streams.
    Promote,
    /// Be woken when the api queues a read receipt, then take up to this
    /// many of those waiting.
    Reads(usize),
    /// Be woken by new entries in the streams given one (those read to
    /// their end); then, in the same round trip, read up to `read` new
    /// entries of each such stream given a count (so that nothing added
    /// before the arming is missed). Each armed stream's pending count is
    /// checked against its `held` messages first: a sender about to wait
    /// must not leave a lost read behind.
    Arm([Option<ArmLane>; 2]),
}

/// The streams an arming is about, with what it asks of each.
fn armed_lanes(lanes: [Option<ArmLane>; 2]) -> impl Iterator<Item = (Lane, ArmLane)> {
    Lane::STREAMS
        .into_iter()
        .filter_map(move |lane| lanes[lane.stream_index()].map(|arm| (lane, arm)))
}

/// What arming one stream asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArmLane {
    /// New entries to read after the arming (`None`: none now).
    pub read: Option<usize>,
    /// Messages of the stream the sender holds.
    pub held: usize,
}

/// What a step came to.
pub(crate) enum Done {
    Control {
        lease_holder: Option<String>,
        paused: bool,
        /// The number's quality rating as last read from Meta, if known.
        quality: Option<String>,
    },
    Summary([ParkedSummary; 2]),
    Messages {
        lane: Lane,
        messages: Vec<HeldMessage>,
        parked: Option<ParkedSummary>,
        /// Taken over from another consumer: the previous owner may have
        /// been sending them when it stopped.
        taken_over: bool,
    },
    Parked(Vec<(Lane, ParkedSummary)>),
    Promoted {
        /// Messages moved into the streams.
        moved: usize,
        next_due_ms: Option<i64>,
    },
    /// Armed; what the reads that followed found, by lane.
    Armed([Vec<HeldMessage>; 2]),
    /// Read receipts to send, and whether more may be waiting.
    Reads {
        reads: Vec<ReadRequest>,
        more: bool,
    },
}

/// One sender's Redis handles, lent to one step at a time.
pub(crate) struct SenderIo {
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    consumers: [Consumer; 2],
    /// New entries in either stream.
    pub wake: Arc<Notify>,
    /// The scheduled set changed.
    pub scheduled: Arc<Notify>,
    /// The lease, the pause flag or the quality rating changed.
    pub control: Arc<Notify>,
    /// The api queued a read receipt.
    pub reads: Arc<Notify>,
}

impl SenderIo {
    pub fn new(worker: Arc<Worker>, sender: Arc<SenderSettings>) -> Self {
        let pnid = &sender.phone_number_id;
        let consumer = |lane| {
            worker.queue.consumer(
                &keys::stream(pnid, lane),
                keys::CONSUMER_GROUP,
                &worker.consumer,
                Claim::Takeover {
                    reserved: &[PARKED_CONSUMER],
                },
            )
        };
        Self {
            consumers: [consumer(Lane::Transactional), consumer(Lane::Bulk)],
            worker,
            sender,
            wake: Arc::new(Notify::new()),
            scheduled: Arc::new(Notify::new()),
            control: Arc::new(Notify::new()),
            reads: Arc::new(Notify::new()),
        }
    }

    pub fn consumer(&self, lane: Lane) -> &Consumer {
        &self.consumers[lane.stream_index()]
    }

    pub fn consumer_mut(&mut self, lane: Lane) -> &mut Consumer {
        &mut self.consumers[lane.stream_index()]
    }

    /// Runs one step; on failure, the streams it touched are reconciled next.
    pub async fn run(&mut self, step: Step) -> Result<Done, QueueError> {
        let lanes: Vec<Lane> = match &step {
            Step::Claim { lane, .. } | Step::Read { lane, .. } | Step::Unpark { lane, .. } => {
                vec![*lane]
            }
            Step::Arm(lanes) => armed_lanes(*lanes).map(|(lane, _)| lane).collect(),
            Step::Park(requests) => requests.iter().map(|r| r.lane).collect(),
            _ => Vec::new(),
        };
        let result = self.step(step).await;
        if let Err(error) = &result {
            for lane in lanes {
                self.consumer_mut(lane).failed(error);
            }
        }
        result
    }

    async fn step(&mut self, step: Step) -> Result<Done, QueueError> {
        let queue = &self.worker.queue;
        let pnid = self.sender.phone_number_id.clone();
        match step {
            Step::Control => {
                let values = self
                    .worker
                    .watcher
                    .get_and_arm(
                        &[
                            keys::lease(&pnid),
                            keys::paused(&pnid),
                            keys::quality(&pnid),
                        ],
                        &self.control,
                    )
                    .await?;
                let mut values = values.into_iter();
                Ok(Done::Control {
                    lease_holder: values.next().flatten(),
                    paused: values.next().flatten().is_some(),
                    quality: values.next().flatten(),
                })
            }
            Step::Summary => {
                let transactional = queue.parked_summary(&pnid, Lane::Transactional).await?;
                let bulk = queue.parked_summary(&pnid, Lane::Bulk).await?;
                Ok(Done::Summary([transactional, bulk]))
            }
            Step::Claim {
                lane,
                count,
                held,
                routed,
            } => {
                let taken_over = self.consumer(lane).is_taking_over();
                let entries = self
                    .consumer_mut(lane)
                    .claim_due(count, &held)
                    .await?
                    .unwrap_or_default();
                let (entries, parked) = if routed && !entries.is_empty() {
                    self.route_taken(lane, entries).await?
                } else {
                    (entries, None)
                };
                let messages = self.held_messages(lane, entries, true).await?;
                Ok(Done::Messages {
                    lane,
                    messages,
                    parked,
                    taken_over,
                })
            }
            Step::Read {
                lane,
                count,
                routed,
            } => {
                let (entries, parked) = if routed {
                    let read = queue
                        .read_routed(&pnid, lane, &self.worker.consumer, count)
                        .await?;
                    self.consumer_mut(lane)
                        .note_read(read.entries.len() + read.parked, count);
                    (read.entries, Some(read.summary))
                } else {
                    (self.consumer_mut(lane).read_new(count).await?, None)
                };
                let messages = self.held_messages(lane, entries, false).await?;
                Ok(Done::Messages {
                    lane,
                    messages,
                    parked,
                    taken_over: false,
                })
            }
            Step::Park(requests) => {
                let now = Instant::now();
                let now_ms = unix_ms();
                let mut summaries = Vec::new();
                for request in requests {
                    let ids: Vec<&str> = request.entry_ids.iter().map(String::as_str).collect();
                    let due_ms = request.due.map(|due| ms_at(due, now, now_ms));
                    let summary = queue
                        .park(
                            &pnid,
                            request.lane,
                            &request.recipient,
                            &ids,
                            due_ms,
                            now_ms,
                        )
                        .await?;
                    summaries.retain(|(lane, _)| *lane != request.lane);
                    summaries.push((request.lane, summary));
                }
                Ok(Done::Parked(summaries))
            }
            Step::Unpark { lane, limits } => {
                let unparked = queue
                    .unpark(&pnid, lane, &self.worker.consumer, limits)
                    .await?;
                let messages = self.held_messages(lane, unparked.entries, true).await?;
                Ok(Done::Messages {
                    lane,
                    messages,
                    parked: Some(unparked.summary),
                    taken_over: false,
                })
            }
            Step::Promote => {
                self.worker
                    .watcher
                    .arm(&[keys::scheduled(&pnid)], &self.scheduled)
                    .await?;
                let (moved, next_due_ms) = queue
                    .promote_scheduled(&pnid, unix_ms(), PROMOTE_BATCH)
                    .await?;
                Ok(Done::Promoted { moved, next_due_ms })
            }
            Step::Reads(most) => {
                self.worker
                    .watcher
                    .arm(&[keys::reads(&pnid)], &self.reads)
                    .await?;
                let reads = queue.take_reads(&pnid, most).await?;
                let more = reads.len() >= most;
                Ok(Done::Reads { reads, more })
            }
            Step::Arm(lanes) => {
                let mut streams = Vec::new();
                let mut commands = Vec::new();
                for (lane, arm) in armed_lanes(lanes) {
                    streams.push(keys::stream(&pnid, lane));
                    let consumer = self.consumer_mut(lane);
                    consumer.ensure_group().await?;
                    commands.push(consumer.pending_command());
                    if let Some(count) = arm.read {
                        commands.push(consumer.read_command(count));
                    }
                }
                let mut replies = self
                    .worker
                    .watcher
                    .arm_then(&streams, &self.wake, commands)
                    .await?
                    .into_iter();
                let mut messages = [Vec::new(), Vec::new()];
                for (lane, arm) in armed_lanes(lanes) {
                    let pending = replies.next().unwrap_or(redis::Value::Nil);
                    self.consumer_mut(lane).check_pending(&pending, arm.held);
                    let Some(count) = arm.read else { continue };
                    let reply = replies.next().unwrap_or(redis::Value::Nil);
                    let entries = self.consumer_mut(lane).read_reply(reply, count)?;
                    messages[lane.stream_index()] =
                        self.held_messages(lane, entries, false).await?;
                }
                Ok(Done::Armed(messages))
            }
        }
    }

    /// Parks the entries just taken over whose recipient has messages
    /// parked (they wait behind those, in order).
    async fn route_taken(
        &self,
        lane: Lane,
        entries: Vec<StreamId>,
    ) -> Result<(Vec<StreamId>, Option<ParkedSummary>), QueueError> {
        let (kept, summary) = self
            .worker
            .queue
            .route_taken(
                &self.sender.phone_number_id,
                lane,
                &self.worker.consumer,
                entries,
            )
            .await?;
        Ok((kept, Some(summary)))
    }

    /// Turns stream entries into messages. Entries taken over may have
    /// been tried before: they carry on from their record (attempts, due
    /// time, fallback). An entry this gateway did not write is moved out
    /// of the way.
    async fn held_messages(
        &self,
        lane: Lane,
        entries: Vec<StreamId>,
        taken_over: bool,
    ) -> Result<Vec<HeldMessage>, QueueError> {
        let pnid = &self.sender.phone_number_id;
        let mut deliveries = Vec::with_capacity(entries.len());
        for entry in entries {
            match Delivery::from_entry(pnid, lane, entry) {
                Ok(delivery) => deliveries.push(delivery),
                Err(entry_id) => {
                    tracing::error!(
                        entry_id,
                        "queue entry is not a gateway message; discarding it"
                    );
                    if let Err(error) = self.worker.queue.discard(pnid, lane, &entry_id).await {
                        tracing::warn!(%error, "discarding a malformed entry failed");
                    }
                }
            }
        }
        let now = Instant::now();
        if !taken_over {
            return Ok(deliveries
                .into_iter()
                .map(|delivery| HeldMessage {
                    // A message queued again after an asynchronous failure carries on.
                    progress: delivery.prior,
                    delivery,
                    not_before: now,
                    taken: None,
                })
                .collect());
        }
        let refs: Vec<&Delivery> = deliveries.iter().collect();
        let states = self.worker.queue.retry_states(pnid, &refs).await?;
        let now_ms = unix_ms();
        Ok(deliveries
            .into_iter()
            .zip(
                states
                    .into_iter()
                    .chain(std::iter::repeat_with(Default::default)),
            )
            .map(|(delivery, state)| {
                let wait_ms = state.next_attempt_ms.map_or(0, |due| (due - now_ms).max(0));
                HeldMessage {
                    progress: Progress {
                        attempts: state.attempts.max(delivery.prior.attempts),
                        fallback_used: state.fallback_used || delivery.prior.fallback_used,
                    },
                    delivery,
                    not_before: now + Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
                    taken: None,
                }
            })
            .collect())
    }
}

/// `at` in Unix ms, given that `now` is `now_ms`.
pub(crate) fn ms_at(at: Instant, now: Instant, now_ms: i64) -> i64 {
    let ahead = i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(0);
    let behind = i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(0);
    now_ms + ahead - behind
}

/// Unix ms `at_ms` as an instant of this process, given that `now` is `now_ms`.
pub(crate) fn instant_at(at_ms: i64, now: Instant, now_ms: i64) -> Instant {
    let offset = at_ms - now_ms;
    let magnitude = Duration::from_millis(offset.unsigned_abs());
    if offset >= 0 {
        now + magnitude
    } else {
        now.checked_sub(magnitude).unwrap_or(now)
    }
}
