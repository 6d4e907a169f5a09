//! Drains one owned sender: the thin I/O loop around its state machine
//! ([`SenderState`]). Each turn it carries out what the state machine
//! decides (a Graph API call per message, through `attempt`), runs the
//! next Redis step it needs (`sender_io`: take over, read, park, unpark,
//! promote, arm), and then sleeps until something happens: a call
//! finishes, a step returns, Redis reports a change to the sender's keys
//! (new entries, the pause flag, the lease, the number's quality rating),
//! or the next due time comes.
//! An idle sender does nothing at all: no timer, no Redis call.
//!
//! Guarantees (with the state machine's): no send starts without a valid
//! lease; a sender paused in Redis sends nothing; a sender whose number
//! Meta rates RED sends no bulk message (with `hold_bulk_on_red_quality`):
//! the dispatcher watches the rating this worker knows
//! (`SenderHealth::quality`) and feeds it from Redis (`gw:{pnid}:quality`,
//! written by whichever worker polled Meta or handled its quality webhook),
//! read with the lease and the pause flag before anything is read of the
//! streams, and again when it changes; everything held when the
//! sender is let go stays pending in Redis for the next owner, and the
//! sends already started finish within `worker.shutdown_grace`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::Lane;
use gateway_domain::rules::adaptive_rate::tier_capped;
use gateway_queue::{Outcome, QueueError};
use gateway_telemetry::SenderMetrics;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt::{Slot, attempt, record};
use crate::depth::SenderGauges;
use crate::lease::Lease;
use crate::read_receipts::{ReadDone, mark_read};
use crate::sender_health::quality_name;
use crate::sender_io::{ArmLane, Done, SenderIo, Step, instant_at};
use crate::sender_state::{
    Completion, Decision, HeldMessage, Limits, Next, SenderState, holds_bulk,
};
use crate::waba_rate::WabaShare;
use crate::{Worker, unix_ms};

/// After a failed Redis step, the next one waits this long, doubling up to
/// [`STEP_RETRY_MAX`].
const STEP_RETRY_MIN: Duration = Duration::from_millis(50);
const STEP_RETRY_MAX: Duration = Duration::from_secs(2);

/// Read receipts taken from Redis per step, and held in memory at most.
const READS_PER_STEP: usize = 64;

/// The previous owner's sends count as this much later than it recorded
/// them. Its last calls leave from a process that is stopping and this
/// owner's first ones from a process that has just started: both are busy,
/// and Meta must still see no second over the rate. Costs at most this
/// long a pause in sending at each handover.
const HANDOVER_MARGIN: Duration = Duration::from_millis(50);

type Running = Pin<Box<dyn Future<Output = (SenderIo, Result<Done, QueueError>)> + Send>>;

/// What Redis work is due, besides what the state machine asks for.
struct Plan {
    /// Read the lease and the pause flag (at start, and when either changed).
    control: bool,
    /// Read what is parked (at start).
    summary: bool,
    /// Move due scheduled messages into the streams.
    promote: bool,
    /// Take the read receipts the api queued (at start, and when told).
    reads: bool,
    next_promote: Option<Instant>,
    /// The streams Redis will wake the sender for: those read to their end
    /// since they were armed. A stream still being read is not armed, so
    /// that the worker's own acknowledgements of its entries do not wake
    /// the sender for nothing at every send.
    armed: [bool; 2],
    /// The streams the arming now out arms, until a wake-up comes while it
    /// is out (it may be for an entry added after the arming's read).
    arming: [bool; 2],
    /// Lanes to read once more: an arming could not read them, or a
    /// promotion just added entries.
    reread: [bool; 2],
    /// Reads of these lanes may have been lost (a send could not be recorded).
    uncertain: [bool; 2],
    /// A step failed: none before this.
    retry_at: Option<Instant>,
    retry_pause: Duration,
}

/// What a sender's dispatcher starts with when this worker takes it.
pub(crate) struct Takeover {
    /// The sends of the last window the previous owner left, how long ago
    /// each was; `None` if it died.
    pub handed_over: Option<Vec<Duration>>,
    /// Its place in its WABA's shared rate, if the WABA has one.
    pub waba: Option<WabaShare>,
}

/// Runs until `stop` is cancelled or the lease is lost (`owner` = the name
/// the lease must show); returns this owner's sends of the last window,
/// for the next.
pub(crate) async fn dispatch_sender(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    owner: String,
    lease: Lease,
    takeover: Takeover,
    gauges: SenderGauges,
    stop: CancellationToken,
) -> Vec<Duration> {
    let mut lease = lease;
    let settings = &worker.settings.worker;
    let name = sender.name.clone();
    let limits = Limits {
        rate: sender.rate_per_second,
        pair_interval: settings.pair_interval,
        pair_burst: settings.pair_burst,
        park_after: settings.park_after,
        read_ahead_most: settings.read_ahead,
        in_flight_most: settings.max_in_flight_per_sender,
        batch_size: settings.batch_size,
        max_age: sender.max_age,
    };
    let now = Instant::now();
    let recent = recent_recipients(&worker, &sender, now).await;
    // Without a send log the previous owner did not hand the sender over:
    // it died, maybe in the middle of calls.
    let Takeover { handed_over, waba } = takeover;
    let crashed = handed_over.is_none();
    let sends = handed_over_sends(now, &handed_over.unwrap_or_default());
    let mut state = SenderState::new(limits, now, sends, recent);
    if let Some(share) = waba {
        state.share_waba_rate(share);
    }
    let io = SenderIo::new(worker.clone(), sender.clone());
    let (wake, scheduled, control) = (io.wake.clone(), io.scheduled.clone(), io.control.clone());
    let reads_queued = io.reads.clone();
    let mut io = Some(io);
    let mut running: Option<Running> = None;
    let mut plan = Plan::new();
    let mut sends: JoinSet<Completion> = JoinSet::new();
    let mut receipts: JoinSet<ReadDone> = JoinSet::new();
    let (departures, mut departed) = tokio::sync::mpsc::unbounded_channel();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut waiting_for_permit = false;
    let metrics = Arc::new(worker.metrics.for_sender(&name));
    let mut reported_rate = sender.rate_per_second;
    // The throughput tier (polled by `sender_health`) is looked at when it
    // changes; `true` for the first look.
    let mut tier = worker.sender_health.tier(&name);
    let mut tier_changed = true;
    // The quality rating likewise (it may hold the bulk lane).
    let mut quality = worker.sender_health.quality(&name);
    let mut quality_changed = true;
    // One timer and one cancellation wait for the whole loop: making them
    // anew on every turn costs a timer-wheel lock each.
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);

    loop {
        let now = Instant::now();
        if std::mem::take(&mut tier_changed) {
            let tier = *tier.borrow_and_update();
            let capped = tier_capped(sender.rate_per_second, tier);
            if capped != state.configured_rate() {
                tracing::warn!(sender = %name, rate = capped, ?tier, "the throughput tier sets the sender's rate");
                state.set_rate(capped);
            }
        }
        if std::mem::take(&mut quality_changed) {
            let rating = *quality.borrow_and_update();
            let hold = settings.hold_bulk_on_red_quality;
            follow_quality(&name, rating, hold, &mut state, &mut plan, &gauges);
        }

        // Sends: first when the last ones really left, then as many as may
        // start now.
        apply_departures(&mut departed, &mut state);
        let mut wake_at = None;
        if lease.covers(settings.longest_send) {
            let calls = Calls {
                worker: &worker,
                sender: &sender,
                metrics: &metrics,
                lease: &lease,
                departures: &departures,
            };
            wake_at = calls.start(
                &mut state,
                &mut sends,
                &mut receipts,
                &mut permit,
                &mut waiting_for_permit,
            );
        }
        // A permit is only held to start a send right away.
        if !waiting_for_permit {
            permit = None;
        }
        report(&metrics, &mut state, &gauges, &mut reported_rate, now);

        // Redis: the next step, if none is running.
        if running.is_none()
            && let Some(mut taken) = io.take()
        {
            plan.apply_to(&mut taken);
            match next_step(&mut state, &taken, &mut plan, now) {
                Some(step) => {
                    running = Some(Box::pin(async move {
                        let result = taken.run(step).await;
                        (taken, result)
                    }));
                }
                None => io = Some(taken),
            }
        }

        // The next time something is due: a send, and, unless a Redis step
        // is running (its end wakes the loop), the next step: a promotion,
        // parked messages (taken back a little early, to be ready), a
        // consumer's reconciliation, none before a failed step's retry.
        let next_step_at = io.as_ref().and_then(|io| {
            let consumers = [Lane::Transactional, Lane::Bulk]
                .into_iter()
                .filter(|lane| state.room(*lane) > 0)
                .filter_map(|lane| io.consumer(lane).next_due());
            let parked = state
                .next_parked_due()
                .map(|due| due.checked_sub(settings.park_after).unwrap_or(due));
            // Not before the retry (`None` orders first).
            consumers
                .chain(parked)
                .chain(plan.next_promote)
                .min()
                .max(plan.retry_at)
        });
        let due = wake_at.into_iter().chain(next_step_at).min();
        if let Some(due) = due
            && timer.deadline() != due.into()
        {
            timer.as_mut().reset(due.into());
        }

        tokio::select! {
            _ = &mut cancelled => break,
            Some(done) = sends.join_next(), if !sends.is_empty() => {
                // Every send that finished by now, in one turn: a turn of
                // this loop costs more than a completion.
                let mut done = Some(done);
                while let Some(finished) = done.take().or_else(|| sends.try_join_next()) {
                    let completion = match finished {
                        Ok(completion) => completion,
                        Err(error) => {
                            tracing::error!(%error, sender = %name, "a send task failed");
                            continue;
                        }
                    };
                    match completion.next {
                        Next::Abandon => {
                            plan.uncertain[completion.message.delivery.lane.stream_index()] = true;
                        }
                        // Read the pause back at once (and whether it was
                        // recorded at all).
                        Next::Pause => plan.control = true,
                        _ => {}
                    }
                    state.completed(completion, Instant::now());
                }
                gauges.touch();
            }
            Some(done) = receipts.join_next(), if !receipts.is_empty() => {
                let (answered_in, throttled) = match done {
                    Ok(done) => (done.answered_in, done.throttled),
                    Err(_) => (None, false),
                };
                state.read_completed(answered_in, throttled, Instant::now());
            }
            (returned, result) = async {
                match running.as_mut() {
                    Some(step) => step.await,
                    None => std::future::pending().await,
                }
            }, if running.is_some() => {
                running = None;
                io = Some(returned);
                match result {
                    Ok(done) => {
                        plan.retry_pause = STEP_RETRY_MIN;
                        let stored = match &done {
                            Done::Control { quality, .. } => Some(quality.clone()),
                            _ => None,
                        };
                        if !apply(&owner, crashed, &mut state, &mut plan, &gauges, done) {
                            tracing::warn!(sender = %name, "the lease is another worker's; stopping");
                            break;
                        }
                        if let Some(stored) = stored {
                            // Looked at before the next turn's sends.
                            worker.sender_health.read_stored(&name, stored);
                            quality_changed = true;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(sender = %name, %error, "a Redis step failed; retrying");
                        worker.metrics.redis_failed("read");
                        plan.failed();
                    }
                }
            }
            _ = wake.notified() => {
                plan.woke();
                gauges.touch();
            }
            _ = scheduled.notified() => plan.promote = true,
            _ = control.notified() => plan.control = true,
            _ = reads_queued.notified() => plan.reads = true,
            Ok(()) = tier.changed() => tier_changed = true,
            Ok(()) = quality.changed() => quality_changed = true,
            _ = &mut timer, if due.is_some() => {}
            _ = lease.changed() => {}
            acquired = worker.in_flight.clone().acquire_owned(), if waiting_for_permit => {
                permit = acquired.ok();
                waiting_for_permit = false;
            }
        }
        if lease.is_lost() {
            break;
        }
    }

    // Sends already started finish and are recorded; what was read but not
    // started stays pending in Redis for whoever owns the sender next
    // (read receipts taken but not sent are lost: see `read_receipts`).
    drop(running);
    worker.sender_health.forget_stored(&name);
    let grace = worker.settings.worker.shutdown_grace;
    let _ = tokio::time::timeout(grace, async {
        while let Some(done) = sends.join_next().await {
            if let Ok(completion) = done {
                state.completed(completion, Instant::now());
            }
        }
        while receipts.join_next().await.is_some() {}
    })
    .await;
    sends.abort_all();
    receipts.abort_all();
    // The next owner counts from when the last sends really left.
    apply_departures(&mut departed, &mut state);
    let now = Instant::now();
    state
        .recent_sends()
        .map(|t| now.saturating_duration_since(t))
        .collect()
}

impl Plan {
    /// At a sender's start: read the lease, the pause flag and what is
    /// parked, and promote what is due.
    fn new() -> Self {
        Self {
            control: true,
            summary: true,
            promote: true,
            reads: true,
            next_promote: None,
            armed: [false; 2],
            arming: [false; 2],
            reread: [false; 2],
            uncertain: [false; 2],
            retry_at: None,
            retry_pause: STEP_RETRY_MIN,
        }
    }

    /// Redis reported a change to one of the armed streams, or to one
    /// being armed (which one it does not say): each is read again, and
    /// armed again once read to its end.
    fn woke(&mut self) {
        for index in 0..2 {
            let armed = std::mem::take(&mut self.armed[index]);
            let arming = std::mem::take(&mut self.arming[index]);
            self.reread[index] |= armed || arming;
        }
    }

    /// An arming of `lanes` is about to go out.
    fn arming(&mut self, lanes: [bool; 2]) {
        self.arming = lanes;
    }

    /// The arming came back: its streams are armed, unless a wake-up came
    /// meanwhile (Redis reports a key only once, and it may be for an
    /// entry added after the arming's read).
    fn arming_done(&mut self) {
        let arming = std::mem::take(&mut self.arming);
        for (armed, arming) in self.armed.iter_mut().zip(arming) {
            *armed |= arming;
        }
    }

    /// Carries what happened while the sender's Redis handles were lent to
    /// a step over to them.
    fn apply_to(&mut self, io: &mut SenderIo) {
        for lane in Lane::STREAMS {
            if std::mem::take(&mut self.reread[lane.stream_index()]) {
                io.consumer_mut(lane).woken();
            }
            if std::mem::take(&mut self.uncertain[lane.stream_index()]) {
                io.consumer_mut(lane).mark_uncertain();
            }
        }
    }

    fn failed(&mut self) {
        self.retry_at = Some(Instant::now() + self.retry_pause);
        self.retry_pause = (self.retry_pause * 2).min(STEP_RETRY_MAX);
        // Whatever was being read may have been missed.
        self.control = true;
        self.reads = true;
        self.armed = [false; 2];
        self.arming = [false; 2];
    }
}

/// The Redis step the sender needs next, most urgent first: who holds the
/// lease and whether the sender is paused; read receipts the api queued
/// (they go before any message); parks (they free memory, and
/// must precede any read of the same recipients); what is parked; entries
/// to take over (before any new one, to keep each recipient's order);
/// scheduled messages now due; parked messages now due; new entries;
/// finally, arming the wake-up of each stream read to its end.
fn next_step(
    state: &mut SenderState,
    io: &SenderIo,
    plan: &mut Plan,
    now: Instant,
) -> Option<Step> {
    if plan.retry_at.is_some_and(|at| at > now) {
        return None;
    }
    plan.retry_at = None;
    if std::mem::take(&mut plan.control) {
        return Some(Step::Control);
    }
    // Bounded in memory: more are taken once these went.
    if plan.reads && state.reads_waiting() < READS_PER_STEP {
        plan.reads = false;
        return Some(Step::Reads(READS_PER_STEP));
    }
    if state.has_parks() {
        return Some(Step::Park(state.take_parks()));
    }
    if std::mem::take(&mut plan.summary) {
        return Some(Step::Summary);
    }
    let lanes = [Lane::Transactional, Lane::Bulk];
    for lane in lanes {
        if io.consumer(lane).has_claims_due(now) && state.room(lane) > 0 {
            return Some(Step::Claim {
                lane,
                count: state.read_size(lane),
                held: state.held_ids(lane),
                routed: state.routes_reads(lane),
            });
        }
    }
    if plan.promote || plan.next_promote.is_some_and(|at| at <= now) {
        plan.promote = false;
        plan.next_promote = None;
        return Some(Step::Promote);
    }
    let now_ms = unix_ms();
    for lane in lanes {
        if let Some(limits) = state.unpark_due(lane, now, now_ms) {
            return Some(Step::Unpark { lane, limits });
        }
    }
    for lane in lanes {
        let consumer = io.consumer(lane);
        if !consumer.has_claims_due(now) && !consumer.caught_up() && state.worth_reading(lane) {
            return Some(Step::Read {
                lane,
                count: state.read_size(lane),
                routed: state.routes_reads(lane),
            });
        }
    }
    // A stream read to its end is armed once it wants waking, and read
    // once more in the same round trip: an entry added since the last read
    // is read now, and a later one wakes the sender. A routed stream (some
    // recipients parked) reads through its script, after.
    let arm = lanes.map(|lane| {
        state.wants_waking(lane)
            && io.consumer(lane).caught_up()
            && !plan.armed[lane.stream_index()]
    });
    if arm.contains(&true) {
        plan.arming(arm);
        let step = lanes.map(|lane| {
            arm[lane.stream_index()].then(|| {
                let read = (!state.routes_reads(lane) && state.room(lane) > 0)
                    .then(|| state.read_size(lane));
                if read.is_none() {
                    plan.reread[lane.stream_index()] = true;
                }
                ArmLane {
                    read,
                    held: state.held_in(lane),
                }
            })
        });
        return Some(Step::Arm(step));
    }
    None
}

/// Applies a step's result; false when the lease turned out to be another
/// worker's.
fn apply(
    owner: &str,
    crashed: bool,
    state: &mut SenderState,
    plan: &mut Plan,
    gauges: &SenderGauges,
    done: Done,
) -> bool {
    let (now, now_ms) = (Instant::now(), unix_ms());
    let due = |ms: Option<i64>| ms.map(|ms| instant_at(ms, now, now_ms));
    match done {
        Done::Control {
            lease_holder,
            paused,
            ..
        } => {
            if lease_holder.as_deref() != Some(owner) {
                return false;
            }
            state.set_paused(paused);
            gauges.set_paused(paused);
        }
        Done::Summary(summaries) => {
            for (lane, summary) in [Lane::Transactional, Lane::Bulk].into_iter().zip(summaries) {
                state.parked(lane, summary, due(summary.next_due_ms));
            }
        }
        Done::Messages {
            lane,
            messages,
            parked,
            taken_over,
        } => {
            if !messages.is_empty() {
                gauges.touch();
            }
            for message in messages {
                if taken_over && crashed {
                    // Its call may have reached Meta just before the crash:
                    // its recipient's pair slot counts as used now.
                    state.suspect_sent(message.delivery.recipient.key(), now);
                }
                state.accept(message, now);
            }
            if let Some(summary) = parked {
                state.parked(lane, summary, due(summary.next_due_ms));
            }
        }
        Done::Parked(summaries) => {
            for (lane, summary) in summaries {
                state.parked(lane, summary, due(summary.next_due_ms));
            }
        }
        Done::Promoted { moved, next_due_ms } => {
            plan.next_promote = due(next_due_ms);
            if moved > 0 {
                // Read them now rather than when Redis reports them.
                plan.reread = [true, true];
            }
        }
        Done::Reads { reads, more } => {
            plan.reads |= more;
            state.add_reads(reads);
        }
        Done::Armed(messages) => {
            plan.arming_done();
            for message in messages.into_iter().flatten() {
                state.accept(message, now);
            }
        }
    }
    true
}

/// Holds the sender's bulk lane while its number's `quality` (0 unknown
/// .. 3 red) is RED and the hold is configured, lets it go otherwise, and
/// exports both.
fn follow_quality(
    name: &str,
    quality: i64,
    hold_on_red: bool,
    state: &mut SenderState,
    plan: &mut Plan,
    gauges: &SenderGauges,
) {
    let held = holds_bulk(quality, hold_on_red);
    if held != state.is_held(Lane::Bulk) {
        if held {
            tracing::warn!(
                sender = name,
                "Meta rates the number's quality RED: its bulk messages are held (they stay queued); transactional ones go on"
            );
        } else {
            tracing::info!(
                sender = name,
                rating = quality_name(quality),
                "the number's quality is no longer RED: bulk messages go again"
            );
            // Read what came in meanwhile.
            plan.reread[Lane::Bulk.stream_index()] = true;
        }
        state.set_bulk_held(held);
    }
    gauges.set_quality(quality, held);
}

/// What starting a call needs.
struct Calls<'a> {
    worker: &'a Arc<Worker>,
    sender: &'a Arc<SenderSettings>,
    metrics: &'a Arc<SenderMetrics>,
    lease: &'a Lease,
    departures: &'a UnboundedSender<(Instant, Instant)>,
}

impl Calls<'_> {
    /// Starts every send (or expiry) the state machine allows now; returns
    /// when it next may (`None`: when something happens). Without a free
    /// permit for a call, sets `waiting_for_permit`.
    fn start(
        &self,
        state: &mut SenderState,
        sends: &mut JoinSet<Completion>,
        receipts: &mut JoinSet<ReadDone>,
        permit: &mut Option<OwnedSemaphorePermit>,
        waiting_for_permit: &mut bool,
    ) -> Option<Instant> {
        loop {
            let now = Instant::now();
            match state.next(now, unix_ms(), permit.is_some()) {
                Decision::Send(message) => {
                    let held = permit.take();
                    let span = tracing::info_span!(
                        "message",
                        message_id = %message.delivery.message_id,
                        sender = %self.sender.name,
                    );
                    // Boxed where it is made: the attempt's state is
                    // large, and the span and the task would each copy it.
                    let call = Box::pin(attempt(
                        self.worker.clone(),
                        self.sender.clone(),
                        self.metrics.clone(),
                        message,
                        self.lease.clone(),
                        Slot {
                            taken_at: now,
                            departures: self.departures.clone(),
                            fastest_answer: state.fastest_answer(),
                        },
                    ))
                    .instrument(span);
                    let calls = self.worker.metrics.calls_in_flight.clone();
                    calls.inc();
                    sends.spawn(async move {
                        let completion = call.await;
                        drop(held);
                        calls.dec();
                        completion
                    });
                }
                Decision::MarkRead(read) => {
                    let held = permit.take();
                    let call = mark_read(
                        self.worker.clone(),
                        self.sender.clone(),
                        read,
                        self.lease.clone(),
                    );
                    receipts.spawn(async move {
                        let done = call.await;
                        drop(held);
                        done
                    });
                }
                Decision::Expire(message, reason) => {
                    sends.spawn(expire(
                        self.worker.clone(),
                        self.sender.clone(),
                        message,
                        reason,
                    ));
                }
                Decision::NeedPermit => match self.worker.in_flight.clone().try_acquire_owned() {
                    Ok(acquired) => *permit = Some(acquired),
                    Err(_) => {
                        *waiting_for_permit = true;
                        return None;
                    }
                },
                Decision::Wait(at) => return at,
            }
        }
    }
}

/// When the previous owner's sends were, from how long before `now` its
/// release said they were (with [`HANDOVER_MARGIN`]).
pub(crate) fn handed_over_sends(now: Instant, ago: &[Duration]) -> Vec<Instant> {
    ago.iter()
        .filter_map(|ago| now.checked_sub(*ago))
        .map(|at| at + HANDOVER_MARGIN)
        .collect()
}

/// Moves the sends whose calls left late to when they left (see `Slot`).
fn apply_departures(departed: &mut UnboundedReceiver<(Instant, Instant)>, state: &mut SenderState) {
    while let Ok((taken_at, left)) = departed.try_recv() {
        state.departed(taken_at, left);
    }
}

/// Publishes what the state machine counted and the rate it keeps now.
fn report(
    metrics: &SenderMetrics,
    state: &mut SenderState,
    gauges: &SenderGauges,
    reported_rate: &mut u32,
    now: Instant,
) {
    let tally = state.take_tally();
    if tally.window_waits > 0 {
        metrics.limiter_waits.inc_by(tally.window_waits);
    }
    if tally.pair_waits > 0 {
        metrics.pair_deferrals.inc_by(tally.pair_waits);
    }
    if tally.parked > 0 {
        metrics.parked.inc_by(tally.parked);
    }
    let rate = state.effective_rate(now);
    if rate != *reported_rate {
        *reported_rate = rate;
        gauges.set_rate(rate);
    }
}

/// Records a message that expired before it could be sent.
async fn expire(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    message: HeldMessage,
    reason: &'static str,
) -> Completion {
    let next = record(&worker, &sender, &message, Outcome::Expired { reason }).await;
    worker
        .metrics
        .expired
        .with_label_values(&[sender.name.as_str()])
        .inc();
    Completion::without_call(message, next.unwrap_or(Next::Done))
}

/// Recipients the previous owner messaged recently count as messaged then
/// (a little stricter than the truth): a handover must not reset anyone's
/// pair limit.
async fn recent_recipients(
    worker: &Worker,
    sender: &SenderSettings,
    now: Instant,
) -> Vec<(String, Instant)> {
    let window = worker.settings.worker.pair_window();
    match worker
        .queue
        .recent_recipients(&sender.phone_number_id, window)
        .await
    {
        Ok(recent) => recent
            .into_iter()
            .map(|(recipient, ago)| (recipient, now.checked_sub(ago).unwrap_or(now)))
            .collect(),
        Err(error) => {
            tracing::warn!(sender = %sender.name, %error, "could not read recent recipients");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [bool; 2] = [true, true];

    #[test]
    fn a_wake_up_while_arming_arms_again() {
        let mut plan = Plan::new();
        plan.arming(BOTH);
        plan.arming_done();
        assert_eq!(plan.armed, BOTH, "nothing happened meanwhile: armed");

        plan.woke();
        plan.arming(BOTH);
        plan.woke();
        plan.arming_done();
        assert_eq!(
            (plan.armed, plan.reread),
            ([false, false], BOTH),
            "woken while arming: the wake-up may be for an entry the arming did not read"
        );
    }

    #[test]
    fn a_wake_up_rereads_only_the_armed_streams() {
        let mut plan = Plan::new();
        let bulk_only = [false, true];
        plan.arming(bulk_only);
        plan.arming_done();
        assert_eq!(plan.armed, bulk_only);

        plan.woke();
        assert_eq!(plan.armed, [false, false]);
        assert_eq!(
            plan.reread, bulk_only,
            "a stream still being read was not armed: the wake-up is not about it"
        );
    }
}
