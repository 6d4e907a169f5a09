//! Everything the sandbox tells the business asynchronously: status
//! webhooks for accepted sends (`sent` → `delivered` → `read`, or `failed`)
//! and inbound user messages, POSTed signed to the configured target.
//!
//! The send path calls `Webhooks::report` / `Webhooks::inbound`, which only
//! plan the events and queue them in the `Outbox`; the delivery loop
//! (`delivery::run`, started by `Sandbox::serve`) posts them when due,
//! batches statuses per number, and retries failed POSTs with growing
//! delays. Without a target nothing is queued at all.
//!
//! With `StatusConfig::answer_after_status_ms` set, `report` also returns a
//! `Hold` that the send route awaits before it answers: the message's first
//! status webhook is attempted first, and the answer follows that many ms
//! later (see `hold`). While no delivery loop runs, nothing is held.

pub(crate) mod delivery;
mod hold;
mod outbox;
pub(crate) mod payload;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::config::{StatusConfig, WebhookTarget};
use crate::locks::{read, write};
use crate::random::Random;
use crate::stats::{Counters, Event};
pub(crate) use hold::Hold;
use hold::Posted;
use outbox::Outbox;
use payload::{InboundMessage, SentMessage, StatusEvent, StatusKind};

/// Most webhook work waiting at once; beyond it new events are discarded
/// and counted, so a dead receiver cannot grow memory without bound.
const OUTBOX_CAPACITY: usize = 500_000;

/// A POST body ready to go, with the attempts already made.
#[derive(Debug)]
pub(crate) struct Post {
    body: Bytes,
    attempts: u32,
    /// Answers held until this POST's first attempt is over.
    posted: Vec<Posted>,
}

impl Post {
    fn new(body: Bytes) -> Self {
        Self {
            body,
            attempts: 0,
            posted: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub(crate) enum Work {
    /// A status, with the signal of an answer held for it.
    Status(StatusEvent, Option<Posted>),
    Inbound(InboundMessage),
    Retry(Post),
}

#[derive(Debug)]
pub(crate) struct Webhooks {
    target: RwLock<Option<Arc<WebhookTarget>>>,
    statuses: RwLock<StatusConfig>,
    outbox: Outbox<Work>,
    counters: Arc<Counters>,
    /// Delivery loops running (`delivery::run`); answers are held only
    /// while one does.
    delivering: AtomicUsize,
}

impl Webhooks {
    pub(crate) fn new(
        target: Option<WebhookTarget>,
        statuses: StatusConfig,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            target: RwLock::new(target.map(Arc::new)),
            statuses: RwLock::new(statuses),
            outbox: Outbox::new(OUTBOX_CAPACITY),
            counters,
            delivering: AtomicUsize::new(0),
        }
    }

    pub(crate) fn target(&self) -> Option<Arc<WebhookTarget>> {
        read(&self.target).clone()
    }

    pub(crate) fn set_target(&self, target: Option<WebhookTarget>) {
        *write(&self.target) = target.map(Arc::new);
    }

    pub(crate) fn statuses(&self) -> StatusConfig {
        *read(&self.statuses)
    }

    pub(crate) fn set_statuses(&self, statuses: StatusConfig) {
        *write(&self.statuses) = statuses;
    }

    pub(crate) fn is_enabled(&self) -> bool {
        read(&self.target).is_some()
    }

    /// Queues the statuses of a send accepted at `now` (`wall` is the same
    /// moment on the wall clock, for the statuses' timestamps). Returns the
    /// hold the answer must wait for, when `answer_after_status_ms` asks for
    /// one and a delivery loop runs to post the statuses.
    pub(crate) fn report(
        &self,
        message: SentMessage,
        now: Instant,
        wall: SystemTime,
        random: &Random,
    ) -> Option<Hold> {
        let target = self.target()?;
        let config = self.statuses();
        let message = Arc::new(message);
        let steps = plan(&config, message.failure.is_some(), |p| random.chance(p));
        let due: Vec<Instant> = steps.iter().map(|s| later(now, s.posted)).collect();
        let (hold, mut signals) = if config.answer_after_status_ms > 0 && self.is_delivering() {
            match hold::hold(
                &due,
                Duration::from_millis(config.answer_after_status_ms),
                Duration::from_millis(target.timeout_ms),
            ) {
                Some((hold, signals)) => (Some(hold), signals.into_iter().map(Some).collect()),
                None => (None, Vec::new()),
            }
        } else {
            (None, Vec::new())
        };
        signals.resize_with(steps.len(), || None);
        for ((step, at), posted) in steps.iter().zip(due).zip(signals) {
            let event = StatusEvent {
                message: Arc::clone(&message),
                kind: step.kind,
                at: wall.checked_add(step.happened).unwrap_or(wall),
            };
            self.push(at, Work::Status(event, posted));
        }
        // A delivery loop that stopped meanwhile cleared the outbox after it
        // stopped counting: either this sees it stopped, or the statuses
        // just queued were cleared (which releases the hold).
        hold.filter(|_| self.is_delivering())
    }

    /// Queues the webhook of a simulated user message, due at once.
    pub(crate) fn inbound(&self, message: InboundMessage, now: Instant) {
        if self.is_enabled() {
            self.push(now, Work::Inbound(message));
        }
    }

    /// Queues an account-level webhook (template status, number quality),
    /// due at once and signed like every other.
    pub(crate) fn account(&self, body: &serde_json::Value, now: Instant) {
        if self.is_enabled() {
            self.push(now, Work::Retry(Post::new(payload::encode(body))));
        }
    }

    fn push(&self, at: Instant, work: Work) {
        if !self.outbox.push(at, work) {
            self.counters.count(Event::WebhookDiscarded);
        }
    }

    /// Drops every queued work (and so releases the answers held for it).
    pub(crate) fn clear(&self) {
        self.outbox.clear();
    }

    fn is_delivering(&self) -> bool {
        self.delivering.load(Ordering::SeqCst) > 0
    }

    /// The work due at `now`, taken out of the outbox.
    #[cfg(test)]
    pub(crate) fn take_due(&self, now: Instant) -> Vec<Work> {
        self.outbox.take_due(now, usize::MAX).0
    }
}

fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or(now)
}

/// One status of a message: when it happened and when it is posted, which
/// differ when statuses are reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    kind: StatusKind,
    happened: Duration,
    posted: Duration,
}

/// The statuses a message gets under `config`; `chance(p)` rolls the dice
/// for each configured rate, so tests can decide them.
fn plan(config: &StatusConfig, failed: bool, mut chance: impl FnMut(f64) -> bool) -> Vec<Step> {
    let ms = Duration::from_millis;
    let mut steps: Vec<(StatusKind, Duration)> = if failed {
        vec![(StatusKind::Failed, ms(config.sent_ms))]
    } else {
        let mut steps = vec![(StatusKind::Sent, ms(config.sent_ms))];
        if !chance(config.drop_delivered_rate) {
            steps.push((StatusKind::Delivered, ms(config.delivered_ms)));
        }
        if chance(config.read_rate) {
            steps.push((StatusKind::Read, ms(config.read_ms)));
        }
        steps
    };
    steps.sort_by_key(|&(_, happened)| happened);
    let mut posted: Vec<Duration> = steps.iter().map(|&(_, happened)| happened).collect();
    if chance(config.reorder_rate) {
        posted.reverse();
    }
    let copies = if chance(config.duplicate_rate) { 2 } else { 1 };
    steps
        .iter()
        .zip(posted)
        .flat_map(|(&(kind, happened), posted)| {
            std::iter::repeat_n(
                Step {
                    kind,
                    happened,
                    posted,
                },
                copies,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatusKind::*;

    fn kinds(steps: &[Step]) -> Vec<StatusKind> {
        let mut by_post = steps.to_vec();
        by_post.sort_by_key(|s| s.posted);
        by_post.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn by_default_sent_delivered_read_in_order_at_their_delays() {
        let config = StatusConfig::default();
        let steps = plan(&config, false, |p| p >= 1.0);
        assert_eq!(kinds(&steps), [Sent, Delivered, Read]);
        assert_eq!(
            steps[1].happened,
            Duration::from_millis(config.delivered_ms)
        );
        assert!(steps.iter().all(|s| s.happened == s.posted));
    }

    #[test]
    fn a_failed_send_gets_only_a_failed_status() {
        assert_eq!(
            kinds(&plan(&StatusConfig::default(), true, |_| false)),
            [Failed]
        );
    }

    #[test]
    fn quirks_drop_reorder_and_duplicate() {
        let all = StatusConfig {
            drop_delivered_rate: 1.0,
            reorder_rate: 1.0,
            duplicate_rate: 1.0,
            ..StatusConfig::default()
        };
        let steps = plan(&all, false, |p| p >= 1.0);
        assert_eq!(kinds(&steps), [Read, Read, Sent, Sent]);
        let sent = steps.iter().find(|s| s.kind == Sent).expect("sent");
        assert_eq!(
            sent.happened,
            Duration::from_millis(all.sent_ms),
            "timestamps keep the real order"
        );

        let unread = StatusConfig {
            read_rate: 0.0,
            ..StatusConfig::default()
        };
        assert_eq!(
            kinds(&plan(&unread, false, |p| p >= 1.0)),
            [Sent, Delivered]
        );
    }
}
