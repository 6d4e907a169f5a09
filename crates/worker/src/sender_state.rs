//! The decisions of one sender's dispatcher, with no Redis and no HTTP:
//! which message goes next and when, what waits in memory and what is
//! parked in Redis, how many calls may be open, and how much to read.
//! [`SenderState::next`] answers "send this", "this one expired" or "wait
//! until T"; the dispatcher (`dispatcher.rs`) carries that out and reports
//! back what came of it.
//!
//! Guarantees, each tested here in virtual time:
//! - no window of [`RATE_WINDOW`] holds more sends than the sender's
//!   current rate (lowered for a while after a 130429), across owners (the
//!   window is seeded with the previous owner's sends), nor more than its
//!   WABA's rate over all the WABA's numbers, when it has one;
//! - no recipient gets more than the pair limit allows, and a recipient's
//!   messages go in the order they were accepted;
//! - an attempt that ended before its call gives back its places in the
//!   send window and the pair limit: Meta saw nothing of it;
//! - a message that cannot go within `park_after` leaves memory (it is
//!   parked, with its due time, behind which the recipient's later messages
//!   wait too), so it never holds up another recipient;
//! - calls in flight stay under rate × answer time (with headroom), and
//!   under one while the sender probes a Meta that has not answered yet;
//! - what the worker holds per priority stays under its read-ahead;
//! - a read receipt goes before any message, in the sender's rate but
//!   with no pair pacing, so it never waits behind the backlog;
//! - while the bulk lane is held (Meta rates the number RED, see
//!   [`holds_bulk`]), no bulk message is sent, read, taken over, unparked
//!   or expired, and transactional ones go on as before; once it is let
//!   go, bulk resumes where it stopped.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use gateway_domain::Lane;
use gateway_domain::rules::concurrency::{AnswerTime, calls_in_flight, read_ahead};
use gateway_domain::rules::{AdaptiveRate, PairLimiter, PairSlot, SendWindow};
use gateway_queue::{Delivery, ParkedSummary, Progress, ReadRequest, UnparkLimits};

use crate::lanes::{EntryOrder, Lanes};
use crate::waba_rate::WabaShare;

/// The window the sender's rate is kept in: one second, plus a margin for
/// the jitter between a send leaving here and arriving at Meta, so that
/// Meta sees no second with more than the rate either (costs 4 % of
/// throughput). A call that leaves late moves its own place in the window
/// (`SenderState::departed`); the margin is for what happens after it
/// left: the network, and a busy machine on either side.
pub(crate) const RATE_WINDOW: Duration = Duration::from_millis(1_040);

/// Sends are also spread out: at least this fraction of the average gap
/// (window / rate) apart. A burst of a whole second's worth at once would
/// reach Meta smeared over a few hundred milliseconds when anything on the
/// way is busy, and then share a second with the next burst. Below 1, so
/// that a send that went out late can be caught up with.
const MIN_SPACING_FRACTION: f64 = 0.8;

/// Each gap the pair limit keeps is this much longer than configured. Meta
/// measures the gap between arrivals, and a message that arrives a little
/// late makes the next one look early (after it, Meta's limit counts from
/// the late arrival): 2 % (120 ms of Meta's 6 s) absorbs that jitter.
const PAIR_MARGIN_FRACTION: f64 = 0.02;

/// How long a sender that met a sender-level error waits before its next
/// attempt if nobody resumes it sooner.
const PAUSE_RECHECK: Duration = Duration::from_secs(30);

/// How often recipients whose pair limit has recovered are forgotten:
/// often enough that what is remembered stays near one pair interval's
/// recipients (a pass over them costs microseconds).
const PAIR_STATE_GC: Duration = Duration::from_secs(1);

/// A message the worker holds: read, taken over or unparked, and not
/// finished.
pub(crate) struct HeldMessage {
    pub delivery: Delivery,
    pub progress: Progress,
    /// Not before this (a retry's due time).
    pub not_before: Instant,
    /// What its send took while it is being sent.
    pub taken: Option<Taken>,
}

/// The places a send took when the dispatcher let it go: in the send
/// window (and the WABA's) at `at`, and in its recipient's pair limit.
/// Given back if the attempt ends before its call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    at: Instant,
    pair: PairSlot,
}

impl HeldMessage {
    fn order(&self) -> EntryOrder {
        EntryOrder::of(&self.delivery.entry_id)
    }
}

/// What came of an attempt, for the state machine.
pub(crate) enum Next {
    /// The message is finished (sent, failed, expired).
    Done,
    /// Try again at `at`; with `sender_wait`, the whole sender waits that
    /// long; `throttled` = it was a 130429.
    Retry {
        at: Instant,
        sender_wait: bool,
        throttled: bool,
    },
    /// The sender is paused; the message stays first in its lane.
    Pause,
    /// The outcome could not be recorded: the entry stays pending in Redis
    /// (the dispatcher reconciles, or the next owner takes it).
    Abandon,
}

pub(crate) struct Completion {
    pub message: HeldMessage,
    pub next: Next,
    pub call: Call,
}

impl Completion {
    /// An attempt that ended before its call (see [`Call::NotMade`]).
    pub fn without_call(message: HeldMessage, next: Next) -> Self {
        Self {
            message,
            next,
            call: Call::NotMade,
        }
    }
}

/// Whether an attempt called Meta, and what came back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Call {
    /// The attempt ended before its call (cancelled, held, suppressed, a
    /// Redis read failed...): Meta saw nothing of it, so its places in the
    /// send window and the recipient's pair limit are given back.
    NotMade,
    /// The call got no answer (a timeout, a dropped connection): it may
    /// have reached Meta.
    Unanswered,
    /// Meta answered after this long (an error answer included).
    Answered(Duration),
}

/// What to do now.
pub(crate) enum Decision {
    /// Send this (its send-window and pair slots are taken).
    Send(HeldMessage),
    /// Record this one as expired, without a call (no slot taken).
    Expire(HeldMessage, &'static str),
    /// A message is ready and the send window free: ask again with a
    /// permit for a call in flight.
    NeedPermit,
    /// Send this read receipt (its send-window slot is taken).
    MarkRead(ReadRequest),
    /// Nothing to send before then (`None`: until something happens).
    Wait(Option<Instant>),
}

/// Messages of one recipient to park.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParkRequest {
    pub lane: Lane,
    pub recipient: String,
    pub entry_ids: Vec<String>,
    /// When the oldest may go; `None` = behind what is parked already.
    pub due: Option<Instant>,
}

/// The sender's configuration, as far as the decisions go.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub rate: u32,
    pub pair_interval: Duration,
    pub pair_burst: u32,
    /// A message that cannot go within this is parked.
    pub park_after: Duration,
    pub read_ahead_most: usize,
    pub in_flight_most: usize,
    pub batch_size: usize,
    pub max_age: Duration,
}

/// What the decisions counted since the dispatcher last asked, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Sends that waited for the send window.
    pub window_waits: u64,
    /// Messages that waited for their recipient's pair limit (in memory
    /// or parked).
    pub pair_waits: u64,
    /// Messages parked.
    pub parked: u64,
}

/// What is parked for one priority, as the last script reported it.
#[derive(Debug, Clone, Copy, Default)]
struct Parked {
    recipients: u64,
    next_due: Option<Instant>,
}

pub(crate) struct SenderState {
    limits: Limits,
    rate: AdaptiveRate,
    window: SendWindow,
    last_send: Option<Instant>,
    pairs: PairLimiter,
    last_gc: Instant,
    /// Transactional first: a bulk message goes only when no transactional
    /// one is ready.
    lanes: [Lanes<HeldMessage>; 2],
    /// Entry ids held (waiting or in flight), with their priority.
    held: HashMap<String, Lane>,
    held_count: [usize; 2],
    in_flight: usize,
    /// One call at a time until one is answered: a dead token or a hanging
    /// Meta costs one attempt, not a whole batch.
    probing: bool,
    answer: AnswerTime,
    sender_wait_until: Option<Instant>,
    paused: bool,
    /// The bulk lane is held (quality RED): nothing of it goes or comes in.
    bulk_held: bool,
    parks: Vec<ParkRequest>,
    parked: [Parked; 2],
    tally: Tally,
    /// The WABA's rate this sender shares with its WABA's other numbers.
    waba: Option<WabaShare>,
    /// Read receipts to send, before any message: they count towards the
    /// rate, and skip the window rule and the pair pacing, as at Meta.
    reads: VecDeque<ReadRequest>,
}

impl SenderState {
    /// `handed_over` = the previous owner's last sends; `recent` = the
    /// recipients it messaged lately and when.
    pub fn new(
        limits: Limits,
        now: Instant,
        handed_over: impl IntoIterator<Item = Instant>,
        recent: impl IntoIterator<Item = (String, Instant)>,
    ) -> Self {
        let mut window = SendWindow::new(limits.rate, RATE_WINDOW);
        window.seed(handed_over);
        let gap = limits.pair_interval.mul_f64(1.0 + PAIR_MARGIN_FRACTION);
        let mut pairs = PairLimiter::new(gap, limits.pair_burst);
        for (recipient, at) in recent {
            pairs.seed(&recipient, at);
        }
        Self {
            rate: AdaptiveRate::new(limits.rate),
            window,
            last_send: None,
            pairs,
            last_gc: now,
            lanes: [Lanes::default(), Lanes::default()],
            held: HashMap::new(),
            held_count: [0, 0],
            in_flight: 0,
            probing: true,
            answer: AnswerTime::default(),
            sender_wait_until: None,
            paused: false,
            bulk_held: false,
            parks: Vec::new(),
            parked: [Parked::default(); 2],
            tally: Tally::default(),
            waba: None,
            reads: VecDeque::new(),
            limits,
        }
    }

    /// The sender's sends count towards its WABA's rate too.
    pub fn share_waba_rate(&mut self, share: WabaShare) {
        self.waba = Some(share);
    }

    /// A message read, taken over or unparked comes into memory, or joins
    /// its recipient's messages being parked.
    pub fn accept(&mut self, message: HeldMessage, now: Instant) {
        let lane = message.delivery.lane;
        let recipient = message.delivery.recipient.key();
        let entry_id = message.delivery.entry_id.clone();
        if self.held.contains_key(&entry_id) {
            // Read twice (a reconciliation racing a late reply): once is enough.
            return;
        }
        if let Some(park) = self
            .parks
            .iter_mut()
            .find(|p| p.lane == lane && p.recipient == recipient)
        {
            park.entry_ids.push(entry_id);
            return;
        }
        if message.not_before > now + self.limits.park_after {
            let due = message.not_before;
            let recipient = recipient.to_owned();
            self.park(lane, recipient, vec![entry_id], Some(due));
            return;
        }
        let order = message.order();
        let not_before = message.not_before;
        let recipient = recipient.to_owned();
        self.held.insert(entry_id, lane);
        self.held_count[lane.stream_index()] += 1;
        self.lanes[lane.stream_index()].push(&recipient, message, not_before, order);
    }

    /// A message to `recipient` may have gone out at `now` without this
    /// worker knowing (its previous owner died with the call in flight):
    /// the recipient's pair limit counts it.
    pub fn suspect_sent(&mut self, recipient: &str, now: Instant) {
        self.pairs.seed(recipient, now);
    }

    /// What to do at `now` (`now_ms`: the same moment in Unix ms);
    /// `permit` = a call in flight may start.
    pub fn next(&mut self, now: Instant, now_ms: i64, permit: bool) -> Decision {
        if now.duration_since(self.last_gc) > PAIR_STATE_GC {
            self.pairs.forget_recovered(now);
            self.last_gc = now;
        }
        loop {
            if self.paused {
                return Decision::Wait(None);
            }
            if let Some(until) = self.sender_wait_until.filter(|u| *u > now) {
                return Decision::Wait(Some(until));
            }
            let limit = self.rate.current(now);
            if self.window.limit() != limit {
                self.window.set_limit(limit);
            }
            if self.in_flight >= self.in_flight_cap() {
                return Decision::Wait(None);
            }
            let bulk_held = self.bulk_held;
            // `None`: a read receipt goes first.
            let lane = match self.reads.is_empty() {
                false => None,
                true => {
                    let Some(lane) = Lane::STREAMS
                        .into_iter()
                        .filter(|lane| !(bulk_held && *lane == Lane::Bulk))
                        .find(|lane| self.lanes[lane.stream_index()].has_ready(now))
                    else {
                        let next_wake = Lane::STREAMS
                            .into_iter()
                            .filter(|lane| !self.is_held(*lane))
                            .filter_map(|lane| self.lanes[lane.stream_index()].next_wake())
                            .min();
                        return Decision::Wait(next_wake);
                    };
                    Some(lane)
                }
            };
            let spacing = RATE_WINDOW.mul_f64(MIN_SPACING_FRACTION / f64::from(limit.max(1)));
            let paced_at = self.last_send.map_or(now, |t| t + spacing);
            let mut window_at = self.window.next_allowed(now).max(paced_at);
            if let Some(waba) = &self.waba {
                window_at = waba.next_allowed(now, window_at);
            }
            if window_at > now {
                self.tally.window_waits += 1;
                return Decision::Wait(Some(window_at));
            }
            if !permit {
                return Decision::NeedPermit;
            }
            let Some(lane) = lane else {
                if self
                    .waba
                    .as_ref()
                    .is_some_and(|w| w.try_acquire(now).is_err())
                    || self.window.try_acquire(now).is_err()
                {
                    return Decision::Wait(Some(now + Duration::from_millis(1)));
                }
                let Some(read) = self.reads.pop_front() else {
                    continue;
                };
                self.last_send = Some(now);
                self.in_flight += 1;
                return Decision::MarkRead(read);
            };
            let lanes = &mut self.lanes[lane.stream_index()];
            let Some(recipient) = lanes.next_ready(now) else {
                continue;
            };
            if let Some(reason) = lanes
                .head(&recipient)
                .and_then(|head| expiry(head, now_ms, self.limits.max_age))
            {
                let Some(message) = lanes.take(&recipient) else {
                    continue;
                };
                self.in_flight += 1;
                return Decision::Expire(message, reason);
            }
            let pair_at = self.pairs.next_allowed(&recipient, now);
            if pair_at > now {
                self.tally.pair_waits += 1;
            }
            if pair_at > now + self.limits.park_after {
                self.park_waiting(lane, &recipient, pair_at);
                continue;
            }
            if pair_at > now {
                lanes.defer(&recipient, pair_at);
                continue;
            }
            let Some(mut message) = lanes.take(&recipient) else {
                continue;
            };
            // The WABA's first: the one the sender's other numbers can
            // take in the meantime.
            let taken = if self
                .waba
                .as_ref()
                .is_some_and(|w| w.try_acquire(now).is_err())
                || self.window.try_acquire(now).is_err()
            {
                None
            } else {
                self.pairs.try_acquire(&recipient, now).ok()
            };
            let Some(pair) = taken else {
                // Cannot happen right after the checks above; keep the order anyway.
                let (not_before, order) = (message.not_before, message.order());
                self.lanes[lane.stream_index()].put_back(&recipient, message, not_before, order);
                return Decision::Wait(Some(now + Duration::from_millis(1)));
            };
            message.taken = Some(Taken { at: now, pair });
            self.last_send = Some(now);
            self.in_flight += 1;
            return Decision::Send(message);
        }
    }

    /// An attempt (or an expiry) came to `completion`.
    pub fn completed(&mut self, completion: Completion, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Completion {
            mut message,
            next,
            call,
        } = completion;
        // Taken at every completion: if this message expires later, that
        // must not give back a send of it that did reach Meta.
        let taken = message.taken.take();
        match call {
            Call::Answered(took) => {
                self.answer.observe(took);
                self.probing = false;
            }
            Call::NotMade => {
                if let Some(taken) = taken {
                    self.give_back(taken);
                }
            }
            Call::Unanswered => {}
        }
        let lane = message.delivery.lane;
        let recipient = message.delivery.recipient.key().to_owned();
        match next {
            Next::Done | Next::Abandon => {
                self.lanes[lane.stream_index()].done(&recipient, now);
                self.forget(&message.delivery.entry_id);
            }
            Next::Retry {
                at,
                sender_wait,
                throttled,
            } => {
                if throttled {
                    self.rate.on_throttled(now);
                }
                if call == Call::Unanswered {
                    // No answer at all (timeout, dropped connection): probe
                    // again before opening more calls to a Meta that may hang.
                    self.probing = true;
                }
                if sender_wait {
                    self.sender_wait_until = Some(self.sender_wait_until.map_or(at, |u| u.max(at)));
                }
                let order = message.order();
                self.lanes[lane.stream_index()].put_back(&recipient, message, at, order);
                if at > now + self.limits.park_after && !sender_wait {
                    self.park_waiting(lane, &recipient, at);
                }
            }
            Next::Pause => {
                // The paused flag reaches the dispatcher through Redis;
                // until it does (or if it could not be written) hold the
                // sender anyway.
                self.probing = true;
                self.sender_wait_until = Some(now + PAUSE_RECHECK);
                let order = message.order();
                self.lanes[lane.stream_index()].put_back(&recipient, message, now, order);
            }
        }
    }

    /// Read receipts waiting to be sent.
    pub fn reads_waiting(&self) -> usize {
        self.reads.len()
    }

    /// Read receipts the api queued for this sender.
    pub fn add_reads(&mut self, reads: impl IntoIterator<Item = ReadRequest>) {
        self.reads.extend(reads);
    }

    /// A read receipt's call ended: answered after `answered_in` (None:
    /// no answer), `throttled` by a 130429.
    pub fn read_completed(&mut self, answered_in: Option<Duration>, throttled: bool, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match answered_in {
            Some(took) => {
                self.answer.observe(took);
                self.probing = false;
            }
            None => self.probing = true,
        }
        if throttled {
            self.rate.on_throttled(now);
        }
    }

    /// Takes the recipient's waiting messages out of memory, to be parked
    /// until `due`.
    fn park_waiting(&mut self, lane: Lane, recipient: &str, due: Instant) {
        let taken = self.lanes[lane.stream_index()].take_waiting(recipient);
        let ids: Vec<String> = taken.into_iter().map(|m| m.delivery.entry_id).collect();
        for id in &ids {
            self.forget(id);
        }
        self.park(lane, recipient.to_owned(), ids, Some(due));
    }

    fn park(
        &mut self,
        lane: Lane,
        recipient: String,
        entry_ids: Vec<String>,
        due: Option<Instant>,
    ) {
        if entry_ids.is_empty() {
            return;
        }
        self.tally.parked += entry_ids.len() as u64;
        match self
            .parks
            .iter_mut()
            .find(|p| p.lane == lane && p.recipient == recipient)
        {
            Some(park) => {
                park.entry_ids.extend(entry_ids);
                park.due = match (park.due, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => self.parks.push(ParkRequest {
                lane,
                recipient,
                entry_ids,
                due,
            }),
        }
    }

    fn forget(&mut self, entry_id: &str) {
        if let Some(lane) = self.held.remove(entry_id) {
            let count = &mut self.held_count[lane.stream_index()];
            *count = count.saturating_sub(1);
        }
    }

    /// What was counted since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// The parks decided and not yet carried out.
    pub fn take_parks(&mut self) -> Vec<ParkRequest> {
        std::mem::take(&mut self.parks)
    }

    pub fn has_parks(&self) -> bool {
        !self.parks.is_empty()
    }

    /// What a script reported parked for `lane`; `due` = its earliest due
    /// time on this process's clock.
    pub fn parked(&mut self, lane: Lane, summary: ParkedSummary, due: Option<Instant>) {
        self.parked[lane.stream_index()] = Parked {
            recipients: summary.recipients,
            next_due: due,
        };
    }

    /// Whether reads of `lane` must route entries of parked recipients.
    pub fn routes_reads(&self, lane: Lane) -> bool {
        self.parked[lane.stream_index()].recipients > 0
    }

    /// What to unpark of `lane` now, if anything is due and there is room.
    pub fn unpark_due(&self, lane: Lane, now: Instant, now_ms: i64) -> Option<UnparkLimits> {
        let due = self.parked[lane.stream_index()].next_due?;
        if due > now + self.limits.park_after {
            return None;
        }
        let room = self.room(lane);
        if room == 0 {
            return None;
        }
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        Some(UnparkLimits {
            due_by_ms: now_ms + ms(self.limits.park_after),
            most: room.min(self.limits.batch_size.max(1)),
            per_recipient: usize::try_from(self.limits.pair_burst.max(1)).unwrap_or(1),
            rest_due_ms: now_ms + ms(self.limits.pair_interval),
        })
    }

    /// When parked messages of either priority next come due, of a lane
    /// with room to take them back (a held lane has none): a full lane is
    /// looked at again when one of its messages finishes.
    pub fn next_parked_due(&self) -> Option<Instant> {
        Lane::STREAMS
            .into_iter()
            .filter(|lane| self.room(*lane) > 0)
            .filter_map(|lane| self.parked[lane.stream_index()].next_due)
            .min()
    }

    /// Messages of `lane` that may still be read into memory (none while
    /// the lane is held).
    pub fn room(&self, lane: Lane) -> usize {
        if self.is_held(lane) {
            return 0;
        }
        let most = read_ahead(
            self.window.limit(),
            self.answer.get(),
            self.limits.read_ahead_most,
        );
        most.saturating_sub(self.held_count[lane.stream_index()])
    }

    /// Entries to read at once: a batch, or what there is room for.
    pub fn read_size(&self, lane: Lane) -> usize {
        self.room(lane).min(self.limits.batch_size.max(1))
    }

    /// Reading one entry at a time as places free up would cost a Redis
    /// call per message: reads wait for room for half a batch, unless the
    /// priority holds nothing at all.
    pub fn worth_reading(&self, lane: Lane) -> bool {
        let room = self.room(lane);
        room > 0
            && (room >= self.limits.batch_size.max(1).div_ceil(2)
                || self.held_count[lane.stream_index()] == 0)
    }

    /// Whether `lane`, read to its end, should be woken by new entries:
    /// only while it holds less than half a batch and is not held. One that
    /// holds more reads again once its sends have made room (a new entry
    /// would wait behind those anyway), and meanwhile each of its own sends
    /// (its entry's deletion) would wake it for nothing.
    pub fn wants_waking(&self, lane: Lane) -> bool {
        !self.is_held(lane)
            && self.held_count[lane.stream_index()] < self.limits.batch_size.max(1).div_ceil(2)
    }

    /// How many messages of `lane` are held (read and not finished).
    pub fn held_in(&self, lane: Lane) -> usize {
        self.held_count[lane.stream_index()]
    }

    /// The entry ids held of `lane` (for a reconciliation).
    pub fn held_ids(&self, lane: Lane) -> std::collections::HashSet<String> {
        self.held
            .iter()
            .filter(|(_, l)| l.stream_index() == lane.stream_index())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Calls that may be open now.
    pub fn in_flight_cap(&self) -> usize {
        if self.probing {
            return 1;
        }
        calls_in_flight(
            self.window.limit(),
            self.answer.get(),
            self.limits.in_flight_most,
        )
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    #[cfg(test)]
    /// Nothing held, nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.in_flight == 0
    }

    /// The sender's paused flag (from Redis).
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            // Resumed by an operator: try again now.
            self.sender_wait_until = None;
        }
        self.paused = paused;
    }

    /// Holds the bulk lane (`true`) or lets it go: see [`holds_bulk`].
    pub fn set_bulk_held(&mut self, held: bool) {
        self.bulk_held = held;
    }

    /// Whether nothing of `lane` may go (or be read) now.
    pub fn is_held(&self, lane: Lane) -> bool {
        lane == Lane::Bulk && self.bulk_held
    }

    /// The throughput tier caps the configured rate.
    pub fn set_rate(&mut self, rate: u32) {
        if rate != self.rate.configured() {
            self.rate.set_configured(rate);
        }
    }

    pub fn configured_rate(&self) -> u32 {
        self.rate.configured()
    }

    /// The rate the sender keeps now (lowered after a 130429).
    pub fn effective_rate(&mut self, now: Instant) -> u32 {
        let waba = self.waba.as_ref().map_or(u32::MAX, WabaShare::limit);
        self.rate.current(now).min(waba)
    }

    /// Gives back what a send took whose attempt ended before its call.
    fn give_back(&mut self, taken: Taken) {
        self.window.give_back(taken.at);
        if let Some(waba) = &self.waba {
            waba.give_back(taken.at);
        }
        self.pairs.give_back(taken.pair);
    }

    /// The send whose slot was taken at `taken_at` left only at `left`: the
    /// window counts it from then (a late call must not bunch up with the
    /// ones after it at Meta).
    pub fn departed(&mut self, taken_at: Instant, left: Instant) {
        self.window.delay(taken_at, left);
        if let Some(waba) = &self.waba {
            waba.delay(taken_at, left);
        }
    }

    /// The fastest of Meta's recent answers to this sender's calls.
    pub fn fastest_answer(&self) -> Duration {
        self.answer.fastest()
    }

    /// The send times of the last window, for the next owner.
    pub fn recent_sends(&self) -> impl Iterator<Item = Instant> + '_ {
        self.window.recent()
    }
}

/// Whether a sender's bulk lane is held: its number's quality rating
/// (`quality`: 0 unknown, 1 green, 2 yellow, 3 red, as
/// `sender_health::quality_value`) is RED and the hold is configured
/// (`worker.hold_bulk_on_red_quality`). Unknown, GREEN and YELLOW hold
/// nothing: Meta lowers a RED number's limits and may restrict it, and bulk
/// traffic is what a business can defer; transactional traffic goes on.
pub(crate) fn holds_bulk(quality: i64, configured: bool) -> bool {
    configured && quality >= 3
}

/// Why a message must not be sent any more, if it must not: past its
/// `expires_at`, or older than the sender's `max_age` (counted from when it
/// became due: a message held until its `send_after`, or replayed from the
/// dead letters, starts afresh).
pub(crate) fn expiry(
    message: &HeldMessage,
    now_ms: i64,
    max_age: Duration,
) -> Option<&'static str> {
    let delivery = &message.delivery;
    let age = Duration::from_millis(u64::try_from(now_ms - delivery.due_ms()).unwrap_or(0));
    if delivery
        .expires_at_ms
        .is_some_and(|expires| now_ms >= expires)
    {
        Some("expires_at")
    } else if age > max_age {
        Some("max_age")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use gateway_domain::Recipient;
    use redis::Value;
    use redis::streams::StreamId;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);
    /// Unix ms of the test's start: every message was accepted a moment ago.
    const T0_MS: i64 = 1_800_000_000_000;

    fn limits(rate: u32) -> Limits {
        Limits {
            rate,
            pair_interval: Duration::from_secs(6),
            pair_burst: 1,
            park_after: Duration::from_millis(250),
            read_ahead_most: 1_024,
            in_flight_most: 1_024,
            batch_size: 64,
            max_age: Duration::from_secs(24 * 3600),
        }
    }

    /// A recipient as the tests name it: a phone number as it is, a
    /// name ("A") as a user id, "US.A".
    fn user(name: &str) -> String {
        if name.starts_with('+') {
            name.to_owned()
        } else {
            format!("US.{name}")
        }
    }

    /// The name a test gave a recipient.
    fn name(recipient: &Recipient) -> &str {
        recipient.key().trim_start_matches("US.")
    }

    /// A message of the transactional stream, entry `seq`, to the recipient `recipient` names.
    fn message(seq: u64, recipient: &str, now: Instant) -> HeldMessage {
        message_in(Lane::Transactional, seq, recipient, now)
    }

    fn message_in(lane: Lane, seq: u64, recipient: &str, now: Instant) -> HeldMessage {
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let map: HashMap<String, Value> = [
            ("snd", text("s0")),
            ("cli", text("billing")),
            ("rcpt", text(&user(recipient))),
            ("kind", text("template")),
            ("body", text("{}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let entry = StreamId {
            id: format!("{}-{seq}", T0_MS - 1_000),
            map,
            ..StreamId::default()
        };
        HeldMessage {
            delivery: Delivery::from_entry("1000000000", lane, entry).expect("a gateway entry"),
            progress: Progress::default(),
            not_before: now,
            taken: None,
        }
    }

    fn ms(now: Instant, t0: Instant) -> i64 {
        T0_MS + i64::try_from(now.duration_since(t0).as_millis()).expect("ms")
    }

    /// A send Meta accepted after `took`.
    fn accepted_after(message: HeldMessage, took: Duration) -> Completion {
        Completion {
            message,
            next: Next::Done,
            call: Call::Answered(took),
        }
    }

    /// Runs the state machine in virtual time: every send is answered
    /// `answer` later with `outcome(message)`; returns the sends in order
    /// (virtual time, recipient, entry seq) until `until` or nothing is left.
    fn drive(
        state: &mut SenderState,
        t0: Instant,
        until: Instant,
        answer: Duration,
        outcome: impl FnMut(&HeldMessage, Instant) -> Next,
    ) -> Vec<(Instant, String, u64)> {
        drive_leaving_late(state, t0, until, answer, |_| Duration::ZERO, outcome)
    }

    /// As [`drive`], with the call of entry `seq` leaving `late(seq)` after
    /// its slot (reported when it leaves, as `attempt` does); the times
    /// returned are when the sends left.
    fn drive_leaving_late(
        state: &mut SenderState,
        t0: Instant,
        until: Instant,
        answer: Duration,
        late: impl Fn(u64) -> Duration,
        mut outcome: impl FnMut(&HeldMessage, Instant) -> Next,
    ) -> Vec<(Instant, String, u64)> {
        let mut now = t0;
        let mut sends = Vec::new();
        let mut answers: Vec<(Instant, HeldMessage)> = Vec::new();
        let mut departures: Vec<(Instant, Instant)> = Vec::new();
        while now < until {
            departures.retain(|(taken_at, left)| {
                let reported = *left <= now;
                if reported {
                    state.departed(*taken_at, *left);
                }
                !reported
            });
            answers.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            while answers.last().is_some_and(|(at, _)| *at <= now) {
                let (_, message) = answers.pop().expect("an answer");
                let next = outcome(&message, now);
                state.completed(
                    Completion {
                        message,
                        next,
                        call: Call::Answered(answer),
                    },
                    now,
                );
            }
            // Parks happen at once (the dispatcher's next Redis step).
            state.take_parks();
            let wait = loop {
                match state.next(now, ms(now, t0), true) {
                    Decision::Send(message) => {
                        let seq = message
                            .delivery
                            .entry_id
                            .rsplit('-')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .expect("seq");
                        let left = now + late(seq);
                        if left > now {
                            departures.push((now, left));
                        }
                        sends.push((left, name(&message.delivery.recipient).to_owned(), seq));
                        answers.push((left + answer, message));
                    }
                    Decision::Expire(message, _) => answers.push((now, message)),
                    Decision::MarkRead(read) => {
                        sends.push((now, format!("read:{}", read.message_id), 0));
                        state.read_completed(Some(answer), false, now);
                    }
                    Decision::NeedPermit => unreachable!("a permit is always given"),
                    Decision::Wait(at) => break at,
                }
            };
            let next_answer = answers.iter().map(|(at, _)| *at).min();
            let next_departure = departures.iter().map(|(_, left)| *left).min();
            now = match [wait, next_answer, next_departure]
                .into_iter()
                .flatten()
                .min()
            {
                Some(at) => at.max(now + MS),
                None => break,
            };
        }
        sends.sort_by_key(|(left, _, _)| *left);
        sends
    }

    #[test]
    fn a_call_that_leaves_late_keeps_its_distance_from_the_sends_after_it() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        for seq in 1..=700 {
            state.accept(message(seq, &format!("+1555{seq:07}"), t0), t0);
        }
        // Now and then Redis is slow for a moment: 15 calls in a row wait
        // 200 ms for their recipient's window after their slots were taken,
        // and reach Meta together with the calls behind them.
        let late = |seq: u64| {
            if seq % 100 < 15 {
                200 * MS
            } else {
                Duration::ZERO
            }
        };
        let sends = drive_leaving_late(&mut state, t0, t0 + 20 * SECOND, 5 * MS, late, |_, _| {
            Next::Done
        });
        assert_eq!(sends.len(), 700);
        let busiest = most_in_a_window(&sends, SECOND);
        assert!(busiest <= 70, "{busiest} left in one second");
    }

    fn most_in_a_window(sends: &[(Instant, String, u64)], window: Duration) -> usize {
        sends
            .iter()
            .map(|(start, _, _)| {
                sends
                    .iter()
                    .filter(|(t, _, _)| *t >= *start && *t < *start + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn read_receipts_go_before_the_backlog_within_the_rate() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(10), t0, [], []);
        for i in 0..100 {
            state.accept(message(i + 1, &format!("+1555{i:07}"), t0), t0);
        }
        // Half a second into the drain, two receipts come in.
        let mut sends = drive(&mut state, t0, t0 + SECOND / 2, 5 * MS, |_, _| Next::Done);
        let asked = t0 + SECOND / 2;
        state.add_reads((0..2).map(|n| ReadRequest {
            message_id: format!("wamid.{n}"),
            typing: n == 0,
            at_ms: T0_MS,
        }));
        sends.extend(drive(&mut state, asked, t0 + 5 * SECOND, 5 * MS, |_, _| {
            Next::Done
        }));
        let reads: Vec<&(Instant, String, u64)> = sends
            .iter()
            .filter(|(_, r, _)| r.starts_with("read:"))
            .collect();
        assert_eq!(reads.len(), 2, "both went");
        for (at, _, _) in &reads {
            let first_message_after = sends
                .iter()
                .filter(|(t, r, _)| *t >= asked && !r.starts_with("read:"))
                .map(|(t, _, _)| *t)
                .min()
                .expect("messages after");
            assert!(*at <= first_message_after, "before any queued message");
            assert!(
                at.duration_since(asked) <= SECOND,
                "within the rate's next slots"
            );
        }
        assert!(
            most_in_a_window(&sends, SECOND) <= 10,
            "receipts count towards the rate"
        );
    }

    #[test]
    fn paced_recipients_leave_memory_and_never_hold_up_the_others() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        let mut seq = 0;
        for recipient in ["A", "B", "C", "D", "E"] {
            for _ in 0..40 {
                seq += 1;
                state.accept(message(seq, recipient, t0), t0);
            }
        }
        for i in 0..500 {
            seq += 1;
            state.accept(message(seq, &format!("+1555{i:07}"), t0), t0);
        }
        // The first decisions send A–E's heads and park what is behind them.
        let sends = drive(&mut state, t0, t0 + 20 * SECOND, 5 * MS, |_, _| Next::Done);
        let others: Vec<&(Instant, String, u64)> =
            sends.iter().filter(|(_, r, _)| r.len() > 1).collect();
        assert_eq!(others.len(), 500, "every other recipient was served");
        let last = others.last().expect("sends").0;
        let ideal = Duration::from_secs_f64(505.0 / 70.0);
        assert!(
            last.duration_since(t0) <= ideal.mul_f64(1.25),
            "the 500 took {:?} (ideal {ideal:?})",
            last.duration_since(t0)
        );
        for recipient in ["A", "B", "C", "D", "E"] {
            let theirs = sends.iter().filter(|(_, r, _)| r == recipient).count();
            assert!(
                theirs <= 4,
                "{recipient} kept its pair limit: {theirs} in 20 s"
            );
        }
        assert!(
            most_in_a_window(&sends, Duration::from_secs(1)) <= 70,
            "no second over the rate"
        );
        assert_eq!(state.held(), 0, "A–E's waiting messages left memory");
    }

    #[test]
    fn a_recipients_messages_go_in_entry_order_and_wait_their_pair_slot() {
        let t0 = Instant::now();
        let mut limits = limits(70);
        limits.pair_interval = 100 * MS;
        let mut state = SenderState::new(limits, t0, [], []);
        for seq in [3, 1, 2] {
            state.accept(message(seq, "A", t0), t0);
        }
        let sends = drive(&mut state, t0, t0 + SECOND, MS, |_, _| Next::Done);
        let order: Vec<u64> = sends.iter().map(|(_, _, seq)| *seq).collect();
        assert_eq!(order, [1, 2, 3]);
        assert!(
            sends[1].0.duration_since(sends[0].0) >= 102 * MS,
            "with the margin"
        );
        assert!(sends[2].0.duration_since(sends[1].0) >= 102 * MS);
    }

    #[test]
    fn a_message_that_must_wait_long_is_parked_with_its_recipients_later_ones() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        state.accept(message(1, "A", t0), t0);
        state.accept(message(2, "A", t0), t0);
        let Decision::Send(first) = state.next(t0, T0_MS, true) else {
            panic!("the first message goes");
        };
        assert_eq!(state.room(Lane::Transactional), state.room(Lane::Bulk) - 2);
        // 131056: retry in 4 s, far beyond `park_after`.
        state.completed(
            Completion {
                message: first,
                next: Next::Retry {
                    at: t0 + 4 * SECOND,
                    sender_wait: false,
                    throttled: false,
                },
                call: Call::Answered(10 * MS),
            },
            t0,
        );
        let parks = state.take_parks();
        assert_eq!(
            parks,
            [ParkRequest {
                lane: Lane::Transactional,
                recipient: user("A"),
                entry_ids: vec![
                    format!("{}-1", T0_MS - 1_000),
                    format!("{}-2", T0_MS - 1_000)
                ],
                due: Some(t0 + 4 * SECOND),
            }]
        );
        assert_eq!(state.held(), 0);
        assert_eq!(state.room(Lane::Transactional), state.room(Lane::Bulk));
        // A message read for A while its park is on its way joins it.
        state.accept(message(1, "B", t0), t0);
        let _ = state.next(t0, T0_MS, true);
        state.completed(
            Completion {
                message: message(3, "A", t0),
                next: Next::Retry {
                    at: t0 + 8 * SECOND,
                    sender_wait: false,
                    throttled: false,
                },
                call: Call::Unanswered,
            },
            t0,
        );
        state.accept(message(4, "A", t0), t0);
        let parks = state.take_parks();
        assert_eq!(parks.len(), 1);
        assert_eq!(
            parks[0].entry_ids,
            [
                format!("{}-3", T0_MS - 1_000),
                format!("{}-4", T0_MS - 1_000)
            ]
        );
    }

    #[test]
    fn an_attempt_that_ended_before_its_call_gives_its_pair_slot_back() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        let retry_soon = |at| Next::Retry {
            at,
            sender_wait: false,
            throttled: false,
        };
        state.accept(message(1, "A", t0), t0);
        let Decision::Send(held) = state.next(t0, T0_MS, true) else {
            panic!("a send");
        };
        // Held before its call (the messaging limit, a Redis read that
        // failed): Meta never saw it, so it may go again at once.
        let soon = t0 + 20 * MS;
        state.completed(Completion::without_call(held, retry_soon(soon)), t0 + MS);
        let Decision::Send(sent) = state.next(soon, T0_MS + 20, true) else {
            panic!("not held up by its own slot");
        };
        // This time the call went out: the recipient waits the interval.
        state.completed(
            Completion {
                message: sent,
                next: retry_soon(soon + MS),
                call: Call::Unanswered,
            },
            soon,
        );
        assert!(
            !matches!(
                state.next(soon + 2 * MS, T0_MS + 22, true),
                Decision::Send(_)
            ),
            "the recipient waits its interval"
        );
    }

    #[test]
    fn an_attempt_that_ended_before_its_call_gives_its_window_place_back() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(2), t0, [], []);
        for (seq, recipient) in ["X", "A", "B"].into_iter().enumerate() {
            state.accept(message(seq as u64, recipient, t0), t0);
        }
        let send_at = |state: &mut SenderState, at: Instant| match state.next(at, ms(at, t0), true)
        {
            Decision::Send(message) => Some(message),
            _ => None,
        };
        let x = send_at(&mut state, t0).expect("X goes");
        state.completed(accepted_after(x, 10 * MS), t0 + 10 * MS);
        // Two sends a second: A fills the window until X is RATE_WINDOW old.
        let a_at = t0 + 500 * MS;
        let a = send_at(&mut state, a_at).expect("A goes");
        let later = Next::Retry {
            at: t0 + 10 * SECOND,
            sender_wait: false,
            throttled: false,
        };
        state.completed(Completion::without_call(a, later), a_at + MS);
        // A never reached Meta: B may have its place before X leaves the window.
        assert!(
            send_at(&mut state, t0 + 950 * MS).is_some(),
            "B goes in A's place"
        );
    }

    #[test]
    fn a_message_that_expires_after_a_call_keeps_that_call_s_window_place() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(2), t0, [], []);
        let mut a = message(1, "A", t0);
        a.delivery.expires_at_ms = Some(T0_MS + 505);
        state.accept(message(0, "X", t0), t0);
        state.accept(a, t0);
        let Decision::Send(x) = state.next(t0, ms(t0, t0), true) else {
            panic!("X goes");
        };
        state.completed(accepted_after(x, 10 * MS), t0 + 10 * MS);
        // A's call goes out and gets no answer; A expires before its retry.
        let a_at = t0 + 500 * MS;
        let Decision::Send(a) = state.next(a_at, ms(a_at, t0), true) else {
            panic!("A goes");
        };
        let unanswered = Completion {
            message: a,
            next: Next::Retry {
                at: a_at + 10 * MS,
                sender_wait: false,
                throttled: false,
            },
            call: Call::Unanswered,
        };
        state.completed(unanswered, a_at + MS);
        let x_gone = t0 + RATE_WINDOW;
        let Decision::Expire(expired, _) = state.next(x_gone, ms(x_gone, t0), true) else {
            panic!("A expires");
        };
        state.completed(Completion::without_call(expired, Next::Done), x_gone);
        state.accept(message(2, "B", x_gone), x_gone);
        state.accept(message(3, "C", x_gone), x_gone);
        let Decision::Send(b) = state.next(x_gone, ms(x_gone, t0), true) else {
            panic!("B goes");
        };
        state.completed(accepted_after(b, 10 * MS), x_gone + 10 * MS);
        // A's call may have reached Meta: with B's it fills the window until
        // it is RATE_WINDOW old.
        let spaced = x_gone + 420 * MS;
        assert!(
            !matches!(state.next(spaced, ms(spaced, t0), true), Decision::Send(_)),
            "C waits for A's place"
        );
        let a_gone = a_at + RATE_WINDOW;
        assert!(matches!(
            state.next(a_gone, ms(a_gone, t0), true),
            Decision::Send(_)
        ));
    }

    #[test]
    fn one_call_while_probing_then_as_many_as_rate_times_answer_time() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        for seq in 0..300 {
            state.accept(message(seq, &format!("r{seq}"), t0), t0);
        }
        assert_eq!(state.in_flight_cap(), 1);
        let first = match state.next(t0, T0_MS, true) {
            Decision::Send(message) => message,
            _ => panic!("a send"),
        };
        assert!(matches!(
            state.next(t0 + SECOND, T0_MS + 1_000, true),
            Decision::Wait(None)
        ));
        let slow = Duration::from_millis(1_500);
        state.completed(accepted_after(first, slow), t0 + slow);
        assert!(state.in_flight_cap() >= 105, "{}", state.in_flight_cap());
        // A call that got no answer at all: probe again.
        let message = match state.next(t0 + 2 * SECOND, T0_MS + 2_000, true) {
            Decision::Send(message) => message,
            _ => panic!("a send"),
        };
        state.completed(
            Completion {
                message,
                next: Next::Retry {
                    at: t0 + 3 * SECOND,
                    sender_wait: false,
                    throttled: false,
                },
                call: Call::Unanswered,
            },
            t0 + 2 * SECOND,
        );
        assert_eq!(state.in_flight_cap(), 1);
    }

    #[test]
    fn a_slow_meta_still_gets_the_full_rate() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        for seq in 0..1_400 {
            state.accept(message(seq, &format!("r{seq}"), t0), t0);
        }
        let sends = drive(
            &mut state,
            t0,
            t0 + 20 * SECOND,
            Duration::from_millis(1_500),
            |_, _| Next::Done,
        );
        // After the probe and its answer, 70 per second.
        let steady: Vec<_> = sends
            .iter()
            .filter(|(t, _, _)| *t >= t0 + 3 * SECOND && *t < t0 + 13 * SECOND)
            .collect();
        assert!(steady.len() >= 665, "{} sends in 10 s", steady.len());
        assert!(most_in_a_window(&sends, Duration::from_secs(1)) <= 70);
    }

    #[test]
    fn an_expired_message_is_recorded_without_a_call_or_a_pair_slot() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        let mut late = message(1, "A", t0);
        late.delivery.expires_at_ms = Some(T0_MS - 1);
        state.accept(late, t0);
        state.accept(message(2, "A", t0), t0);
        let Decision::Expire(expired, reason) = state.next(t0, T0_MS, true) else {
            panic!("expired");
        };
        assert_eq!(reason, "expires_at");
        state.completed(Completion::without_call(expired, Next::Done), t0);
        assert!(
            matches!(state.next(t0, T0_MS, true), Decision::Send(_)),
            "the next message to A is not held back by the pair limit"
        );
    }

    #[test]
    fn transactional_messages_go_before_bulk_ones() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        state.accept(message_in(Lane::Bulk, 1, "bulk", t0), t0);
        state.accept(message_in(Lane::Transactional, 2, "urgent", t0), t0);
        let Decision::Send(first) = state.next(t0, T0_MS, true) else {
            panic!("a send");
        };
        assert_eq!(name(&first.delivery.recipient), "urgent");
        assert!(matches!(state.next(t0, T0_MS, false), Decision::Wait(_)));
    }

    #[test]
    fn without_a_permit_nothing_is_taken_and_the_order_holds() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        state.accept(message(1, "first", t0), t0);
        state.accept(message(2, "second", t0), t0);
        assert!(matches!(state.next(t0, T0_MS, false), Decision::NeedPermit));
        let Decision::Send(first) = state.next(t0, T0_MS, true) else {
            panic!("a send");
        };
        assert_eq!(name(&first.delivery.recipient), "first");
        assert_eq!(state.in_flight(), 1);
    }

    #[test]
    fn a_lane_wants_waking_only_while_it_holds_less_than_half_a_batch() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(1_000), t0, [], []);
        let half_batch = limits(1_000).batch_size.div_ceil(2);
        assert!(state.wants_waking(Lane::Transactional), "holds nothing");
        for seq in 0..half_batch {
            state.accept(message(seq as u64, &format!("+1555{seq:07}"), t0), t0);
        }
        assert!(
            !state.wants_waking(Lane::Transactional),
            "holds half a batch: it reads again when its sends make room"
        );
        let Decision::Send(sent) = state.next(t0, T0_MS, true) else {
            panic!("a send");
        };
        state.completed(accepted_after(sent, MS), t0);
        assert!(state.wants_waking(Lane::Transactional));
        state.set_bulk_held(true);
        assert!(!state.wants_waking(Lane::Bulk), "a held lane is not read");
    }

    #[test]
    fn a_paused_sender_sends_nothing_until_resumed() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        state.accept(message(1, "A", t0), t0);
        state.set_paused(true);
        assert!(matches!(state.next(t0, T0_MS, true), Decision::Wait(None)));
        state.set_paused(false);
        assert!(matches!(state.next(t0, T0_MS, true), Decision::Send(_)));
        assert!(!state.is_idle());
    }

    #[test]
    fn a_held_bulk_lane_sends_nothing_while_transactional_messages_go_on() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        for seq in 0..20 {
            state.accept(
                message_in(Lane::Bulk, seq, &format!("+1555{seq:07}"), t0),
                t0,
            );
        }
        // One of them is long expired: even that is left alone while held.
        let mut stale = message_in(Lane::Bulk, 20, "+15550000020", t0);
        stale.delivery.expires_at_ms = Some(T0_MS - 1);
        state.accept(stale, t0);
        // Some bulk messages are parked and due.
        state.parked(
            Lane::Bulk,
            ParkedSummary {
                recipients: 1,
                next_due_ms: Some(T0_MS),
            },
            Some(t0),
        );
        state.set_bulk_held(true);
        assert!(state.is_held(Lane::Bulk) && !state.is_held(Lane::Transactional));
        assert_eq!(state.room(Lane::Bulk), 0, "no bulk read");
        assert!(!state.worth_reading(Lane::Bulk));
        assert!(
            state.unpark_due(Lane::Bulk, t0, T0_MS).is_none(),
            "no bulk unparked"
        );
        assert_eq!(
            state.next_parked_due(),
            None,
            "no wake-up for held parked ones"
        );
        assert!(state.room(Lane::Transactional) > 0);

        for seq in 100..110 {
            state.accept(message(seq, &format!("+1666{seq:07}"), t0), t0);
        }
        let sends = drive(&mut state, t0, t0 + 10 * SECOND, 5 * MS, |_, _| Next::Done);
        assert_eq!(sends.len(), 10, "the transactional ones, and only them");
        assert!(sends.iter().all(|(_, to, _)| to.starts_with("+1666")));
        assert!(
            matches!(
                state.next(t0 + 20 * SECOND, T0_MS + 20_000, true),
                Decision::Wait(None)
            ),
            "nothing to wake up for while bulk is held"
        );
        assert_eq!(
            state.held_in(Lane::Bulk),
            21,
            "kept, neither sent nor failed"
        );

        // RED no more: bulk goes, the expired one expires, parked ones come due.
        state.set_bulk_held(false);
        assert!(state.room(Lane::Bulk) > 0);
        assert_eq!(state.next_parked_due(), Some(t0));
        let later = t0 + 20 * SECOND;
        let sends = drive(&mut state, later, later + 10 * SECOND, 5 * MS, |_, _| {
            Next::Done
        });
        assert_eq!(sends.len(), 20, "every bulk message once the hold ends");
        assert!(
            sends.iter().all(|(_, _, seq)| *seq != 20),
            "the expired one is not sent"
        );
        assert!(state.is_idle());
    }

    #[test]
    fn only_a_red_rating_holds_bulk_and_only_when_configured() {
        assert!(holds_bulk(3, true));
        for quality in [0, 1, 2] {
            assert!(!holds_bulk(quality, true), "{quality}");
        }
        assert!(!holds_bulk(3, false));
    }

    #[test]
    fn a_message_taken_over_from_a_dead_worker_waits_its_recipients_pair_slot() {
        let t0 = Instant::now();
        let mut state = SenderState::new(limits(70), t0, [], []);
        // Its previous owner may have been sending it when it died.
        state.suspect_sent(&user("A"), t0);
        state.accept(message(1, "A", t0), t0);
        state.accept(message(2, "B", t0), t0);
        let Decision::Send(first) = state.next(t0, T0_MS, true) else {
            panic!("a send");
        };
        assert_eq!(name(&first.delivery.recipient), "B", "A waits 6 s");
        assert_eq!(
            state.take_parks()[0].due,
            Some(t0 + Duration::from_millis(6_120)),
            "A's message waits parked, its pair gap with a margin"
        );
    }
}
