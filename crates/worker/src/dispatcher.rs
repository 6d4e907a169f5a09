//! Drains one owned sender: messages wait in per-recipient lanes and go out
//! when the sender's send window, the recipient's pair limiter, any backoff,
//! the pause flag and the lease all allow, with up to
//! `worker.max_in_flight_per_sender` Graph API calls at once.
//!
//! Guarantees: no one-second window holds more sends than the sender's rate
//! (lowered for a while after a 130429), also across handovers (the window
//! is seeded with the previous owner's sends); one recipient gets its
//! messages in the order they were accepted; no send starts without a
//! valid lease.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::Lane;
use gateway_domain::rules::adaptive_rate::tier_capped;
use gateway_domain::rules::{AdaptiveRate, SendWindow};
use governor::{Quota, RateLimiter, clock::Clock, clock::DefaultClock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt::{Completion, Next, attempt};
use crate::depth::RateGauge;
use crate::lanes::Lanes;
use crate::lease::Lease;
use crate::reader::{Incoming, read_sender};
use crate::{Worker, unix_ms};

/// The window the sender's rate is kept in: one second, plus a margin for
/// the jitter between a send leaving here and arriving at Meta, so that
/// Meta sees no second with more than the rate either (costs 2 % of
/// throughput).
const RATE_WINDOW: Duration = Duration::from_millis(1_020);

/// Sends are also spread out: at least this fraction of the average gap
/// (window / rate) apart. A burst of a whole second's worth at once would
/// reach Meta smeared over a few hundred milliseconds when anything on the
/// way is busy, and then share a second with the next burst. Below 1, so
/// that a send that went out late can be caught up with.
const MIN_SPACING_FRACTION: f64 = 0.8;

/// How long a sender that met a sender-level error waits before its next
/// attempt if nobody resumes it sooner.
const PAUSE_RECHECK: Duration = Duration::from_secs(30);

/// Messages between a reader and the dispatcher: what a reader may hold is
/// bounded by its lane's read-ahead permits; this only decouples the two.
const CHANNEL_CAPACITY: usize = 16;

/// How often recipients whose pair limit has lapsed are forgotten.
const PAIR_STATE_GC: Duration = Duration::from_secs(10);

/// How often idle state is checked even when nothing happens.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// How often the sender's throughput tier (polled by `sender_health`) is
/// looked at: tiers change rarely, and a lookup takes a lock.
const TIER_CHECK: Duration = Duration::from_secs(1);

type PairLimiter =
    RateLimiter<String, governor::state::keyed::HashMapStateStore<String>, DefaultClock>;

/// Runs until `stop` is cancelled or the lease is lost; returns the send
/// times (Unix ms) of the last window, for the next owner. Every change of
/// the sender's effective rate (halved on a 130429, each recovery step)
/// goes to `rate_gauge`.
pub(crate) async fn dispatch_sender(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    mut lease: Lease,
    mut paused: watch::Receiver<bool>,
    handed_over: Option<String>,
    rate_gauge: RateGauge,
    stop: CancellationToken,
) -> Vec<i64> {
    let settings = &worker.settings.worker;
    let reader_stop = stop.child_token();
    let (tx_in, mut transactional_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (bulk_in, mut bulk_rx) = mpsc::channel(CHANNEL_CAPACITY);
    // Each priority holds at most this many messages in memory, from the
    // read to the end of the last attempt.
    let read_ahead = read_ahead(sender.rate_per_second, settings.read_ahead);
    let readers = [
        tokio::spawn(read_sender(
            worker.clone(),
            sender.clone(),
            Lane::Transactional,
            tx_in,
            read_ahead,
            reader_stop.clone(),
        )),
        tokio::spawn(read_sender(
            worker.clone(),
            sender.clone(),
            Lane::Bulk,
            bulk_in,
            read_ahead,
            reader_stop.clone(),
        )),
    ];

    let mut rate = AdaptiveRate::new(sender.rate_per_second);
    let mut window = SendWindow::new(sender.rate_per_second, RATE_WINDOW);
    window.seed(parse_send_log(handed_over.as_deref()));
    let pairs: PairLimiter =
        RateLimiter::hashmap(pair_quota(settings.pair_interval, settings.pair_burst));
    let clock = DefaultClock::default();
    seed_pair_limits(&worker, &sender, &pairs).await;
    // Transactional messages first: a bulk message goes only when no
    // transactional one is ready.
    let mut lanes = Priorities::default();
    let mut in_flight: JoinSet<Completion> = JoinSet::new();
    let mut sender_wait_until: Option<Instant> = None;
    let name = sender.name.as_str();
    let sender_metrics = Arc::new(worker.metrics.for_sender(name));
    let mut last_gc = Instant::now();
    let mut last_send: Option<Instant> = None;
    // Slow start: one call in flight until one comes back finished, then
    // doubling. A sender whose token is dead costs one attempt, not a
    // whole batch, before it is paused.
    let mut in_flight_cap: usize = 1;
    let mut permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut waiting_for_permit = false;

    let mut next_tier_check = Instant::now();
    // One timer and one cancellation wait for the whole loop: making them
    // anew on every turn cost a lock each, several times per message.
    let wake_timer = tokio::time::sleep(IDLE_TICK);
    tokio::pin!(wake_timer);
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    while !stop.is_cancelled() {
        let now = Instant::now();
        if now >= next_tier_check {
            next_tier_check = now + TIER_CHECK;
            let tier = worker.sender_health.tier_limit(name);
            let capped = tier_capped(sender.rate_per_second, tier);
            if capped != rate.configured() {
                tracing::warn!(
                    sender = name,
                    rate = capped,
                    ?tier,
                    "the throughput tier sets the sender's rate"
                );
                rate.set_configured(capped);
            }
        }
        let limit = rate.current(now);
        if window.limit() != limit {
            window.set_limit(limit);
            rate_gauge.set(limit);
        }
        let sending_allowed =
            !*paused.borrow() && lease.valid_until().is_some_and(|until| now < until);
        let mut wake = now + IDLE_TICK;
        // More calls in flight than a second's worth would only pile up
        // behind a slow answer and arrive at Meta in a bunch.
        let max_in_flight = settings
            .max_in_flight_per_sender
            .min(usize::try_from(limit).unwrap_or(usize::MAX))
            .min(in_flight_cap);
        while sending_allowed && in_flight.len() < max_in_flight {
            let now = Instant::now();
            // The worker's own bound on calls in flight, shared by its senders.
            if permit.is_none() {
                permit = worker.in_flight.clone().try_acquire_owned().ok();
            }
            if permit.is_none() {
                waiting_for_permit = true;
                break;
            }
            if let Some(until) = sender_wait_until.filter(|until| *until > now) {
                wake = wake.min(until);
                break;
            }
            let spacing = RATE_WINDOW.mul_f64(MIN_SPACING_FRACTION / f64::from(limit.max(1)));
            let paced_at = last_send.map_or(now, |t| t + spacing);
            let window_at = window.next_allowed(now).max(paced_at);
            if window_at > now {
                sender_metrics.limiter_waits.inc();
                wake = wake.min(window_at);
                break;
            }
            let Some((lane, recipient)) = lanes.next_ready(now) else {
                if let Some(at) = lanes.next_wake() {
                    wake = wake.min(at);
                }
                break;
            };
            let lanes = lanes.of(lane);
            if let Err(not_until) = pairs.check_key(&recipient) {
                sender_metrics.pair_deferrals.inc();
                lanes.defer(&recipient, now + not_until.wait_time_from(clock.now()));
                continue;
            }
            let Some(incoming) = lanes.take(&recipient) else {
                continue;
            };
            if window.try_acquire(now).is_err() {
                // Cannot happen right after next_allowed; keep the order anyway.
                lanes.put_back(&recipient, incoming, now);
                break;
            }
            last_send = Some(now);
            let held = permit.take();
            // Every log line of the attempt names the message and its sender.
            let span = tracing::info_span!(
                "message",
                message_id = %incoming.delivery.message_id,
                sender = name,
            );
            let call = attempt(
                worker.clone(),
                sender.clone(),
                sender_metrics.clone(),
                incoming,
                lease.clone(),
            )
            .instrument(span);
            in_flight.spawn(async move {
                let completion = call.await;
                drop(held);
                completion
            });
        }
        if last_gc.elapsed() > PAIR_STATE_GC {
            pairs.retain_recent();
            pairs.shrink_to_fit();
            last_gc = Instant::now();
        }

        if wake_timer.deadline() != wake.into() {
            wake_timer.as_mut().reset(wake.into());
        }
        tokio::select! {
            _ = &mut cancelled => break,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                match done {
                    Ok(completion) => {
                        in_flight_cap = match completion.next {
                            Next::Done => in_flight_cap.saturating_mul(2).min(settings.max_in_flight_per_sender),
                            Next::Pause => 1,
                            _ => in_flight_cap,
                        };
                        if let Some(until) = apply(&mut lanes, &mut rate, completion, name) {
                            sender_wait_until = Some(sender_wait_until.map_or(until, |u| u.max(until)));
                        }
                    }
                    Err(error) => tracing::error!(%error, sender = name, "a send task failed"),
                }
            }
            incoming = transactional_rx.recv() => match incoming {
                Some(incoming) => lanes.push(*incoming),
                None => break,
            },
            incoming = bulk_rx.recv() => match incoming {
                Some(incoming) => lanes.push(*incoming),
                None => break,
            },
            _ = &mut wake_timer => {}
            _ = lease.changed() => {}
            acquired = worker.in_flight.clone().acquire_owned(), if waiting_for_permit => {
                permit = acquired.ok();
                waiting_for_permit = false;
            }
            _ = paused.changed() => {
                if !*paused.borrow() {
                    // Resumed by an operator: try again now.
                    sender_wait_until = None;
                }
            }
        }
        if lease.valid_until().is_none() {
            break;
        }
    }

    reader_stop.cancel();
    // A reader may be waiting for room in its channel: closing it frees it.
    drop(transactional_rx);
    drop(bulk_rx);
    // Sends already started finish and are recorded; what was read but not
    // started stays pending in Redis for whoever owns the sender next.
    let grace = worker.settings.worker.shutdown_grace;
    let _ = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    in_flight.abort_all();
    for reader in readers {
        let _ = reader.await;
    }
    send_log(&window)
}

/// Messages held in memory per priority: half a second of sending, at
/// least 16, at most the configured bound.
fn read_ahead(rate_per_second: u32, configured: usize) -> usize {
    let half_second = usize::try_from(rate_per_second / 2).unwrap_or(usize::MAX);
    half_second.max(16).min(configured)
}

/// Recipients the previous owner messaged recently count as messaged now
/// (a little stricter than the truth): a handover must not reset anyone's
/// pair limit.
async fn seed_pair_limits(worker: &Worker, sender: &SenderSettings, pairs: &PairLimiter) {
    let window = worker.settings.worker.pair_window();
    let since = unix_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2);
    match worker
        .queue
        .recent_recipients(&sender.phone_number_id, since)
        .await
    {
        Ok(recent) => {
            for (recipient, _) in recent {
                let _ = pairs.check_key(&recipient);
            }
        }
        Err(error) => {
            tracing::warn!(sender = %sender.name, %error, "could not read recent recipients")
        }
    }
}

/// Updates the lanes after an attempt; returns when the whole sender may
/// send again, if it must wait.
fn apply(
    lanes: &mut Priorities,
    rate: &mut AdaptiveRate,
    completion: Completion,
    name: &str,
) -> Option<Instant> {
    let now = Instant::now();
    let recipient = completion.incoming.delivery.recipient.clone();
    let lanes = lanes.of(completion.incoming.delivery.lane);
    match completion.next {
        Next::Done | Next::Abandon => {
            lanes.done(&recipient, now);
            None
        }
        Next::Retry {
            at,
            sender_wait,
            throttled,
        } => {
            if throttled {
                // The send window and the gauge follow on the next turn of
                // the loop, as they do for each recovery step.
                let lowered = rate.on_throttled(now);
                tracing::warn!(
                    sender = name,
                    rate = lowered,
                    "130429: lowering the sender's rate for a while"
                );
            }
            lanes.put_back(&recipient, completion.incoming, at);
            sender_wait.then_some(at)
        }
        Next::Pause => {
            // The paused flag reaches this dispatcher through Redis; until it
            // does (or if it could not be written) hold the sender anyway.
            lanes.put_back(&recipient, completion.incoming, now);
            Some(now + PAUSE_RECHECK)
        }
    }
}

/// The lanes of both priorities.
#[derive(Default)]
struct Priorities {
    transactional: Lanes<Incoming>,
    bulk: Lanes<Incoming>,
}

impl Priorities {
    fn of(&mut self, lane: Lane) -> &mut Lanes<Incoming> {
        match lane {
            Lane::Bulk => &mut self.bulk,
            _ => &mut self.transactional,
        }
    }

    fn push(&mut self, incoming: Incoming) {
        let recipient = incoming.delivery.recipient.clone();
        let not_before = incoming.not_before;
        self.of(incoming.delivery.lane)
            .push(&recipient, incoming, not_before);
    }

    /// The next ready recipient, transactional first.
    fn next_ready(&mut self, now: Instant) -> Option<(Lane, String)> {
        if let Some(recipient) = self.transactional.next_ready(now) {
            return Some((Lane::Transactional, recipient));
        }
        self.bulk
            .next_ready(now)
            .map(|recipient| (Lane::Bulk, recipient))
    }

    fn next_wake(&self) -> Option<Instant> {
        [self.transactional.next_wake(), self.bulk.next_wake()]
            .into_iter()
            .flatten()
            .min()
    }
}

fn pair_quota(interval: Duration, burst: u32) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(interval)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// `ms,ms,...` as a previous owner left it, turned into this process's Instants.
fn parse_send_log(log: Option<&str>) -> Vec<Instant> {
    let (now, now_ms) = (Instant::now(), unix_ms());
    log.into_iter()
        .flat_map(|l| l.split(','))
        .filter_map(|ms| ms.trim().parse::<i64>().ok())
        .filter_map(|ms| {
            let ago = Duration::from_millis(u64::try_from(now_ms - ms).ok()?);
            now.checked_sub(ago)
        })
        .collect()
}

fn send_log(window: &SendWindow) -> Vec<i64> {
    let (now, now_ms) = (Instant::now(), unix_ms());
    window
        .recent()
        .map(|t| now_ms - i64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_logs_survive_the_trip_through_unix_time() {
        let now_ms = unix_ms();
        let log = format!("{},{},junk,{}", now_ms - 900, now_ms - 10, now_ms + 5);
        let parsed = parse_send_log(Some(&log));
        assert_eq!(parsed.len(), 2, "future and malformed entries are dropped");
        let mut window = SendWindow::new(2, Duration::from_secs(1));
        window.seed(parsed);
        assert!(
            window.try_acquire(Instant::now()).is_err(),
            "two sends in the last second fill a limit of 2"
        );
    }
}
