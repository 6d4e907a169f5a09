//! The delivery loop: reads the outbox through the consumer group, POSTs
//! each notification signed, and settles it in Redis: 2xx = done (acked and
//! deleted); a 3xx (redirects are not followed) or a callback refused for
//! where it leads (see the `transport` module) = the dead stream at once;
//! anything else = retry at a growing, jittered delay, until
//! `max_attempts`, then the dead stream. An unknown signer or an unusable
//! URL goes to the dead stream at once: retrying cannot fix configuration.
//!
//! It owns this worker's reader in the group (a
//! [`Consumer`](gateway_queue::Consumer) competing with the other workers'
//! through `Claim::Stale`), up to `concurrency` deliveries in flight, and
//! the promotion of due retries back into the stream.
//!
//! - **Reading** never blocks (`XREADGROUP` without `BLOCK`): the outbox
//!   shares one multiplexed connection, and a blocking read would hold up
//!   every command queued behind it (the deliveries' own settles). Nor does
//!   it poll: once a read comes back short, the loop arms the outbox stream
//!   and the retry set with the [`KeyWatcher`], then reads and promotes
//!   once more (for an entry or a retry added before the arm, which wakes
//!   nobody); then it waits, asking Redis nothing, for another process's
//!   change to either key (a notification pushed, a replay), a delivery
//!   ending (a free slot, or a retry it scheduled), the next retry's due
//!   time, the consumer's own next step, or shutdown. An idle worker's only
//!   notification command is the look for stale entries, every ~10 s (or
//!   half `claim_idle`, if shorter).
//! - **Retries** wait in the retry set; a promotion moves the due ones back
//!   into the stream and says when the next one is due, which is when it
//!   runs again. It also runs after each wake-up, and when a retry one of
//!   this worker's deliveries scheduled comes due. The `pending` gauge is
//!   set from each promotion's reply.
//! - **Taking over**: entries pending longer than `claim_idle` (a worker
//!   crashed holding them) are taken with `XAUTOCLAIM`; after a failed read,
//!   this consumer's own pending entries that no delivery holds (a read
//!   that ran but whose answer was lost) are claimed again.
//!
//! A delivery is settled only after its POST finished, so a crash between
//! POST and settle delivers it again: at least once. On shutdown the loop
//! stops reading, lets deliveries in flight finish for up to `timeout +
//! 1 s`, and returns; whatever it did not settle stays pending in Redis for
//! another worker.

use std::collections::{HashMap, HashSet};
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use gateway_queue::{Claim, KeyWatcher};
use redis::streams::StreamId;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Malformed, Outbox, Pending, pending_from_entry};
use crate::transport::{Destination, Refusal};
use crate::{NotifyMetrics, SIGNATURE_HEADER, TIMESTAMP_HEADER, Transport, sign};
use gateway_queue::keys::{NOTIFY_OUTBOX, NOTIFY_RETRY};

/// Most retries moved per promotion, so one script call stays short; a
/// full batch promotes again at once.
const PROMOTE_BATCH: usize = 500;
/// How often stale pending entries are looked for: every 10 s, or every
/// half `claim_idle` if that is shorter (looking more often than entries
/// can become stale finds nothing; looking much less often delays recovery
/// well past `claim_idle`), but not more often than every 100 ms.
const CLAIM_EVERY_MAX: Duration = Duration::from_secs(10);
const CLAIM_EVERY_MIN: Duration = Duration::from_millis(100);
/// After a Redis error, wait this long before the next read.
const REDIS_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// On shutdown, deliveries in flight get their POST timeout plus this to
/// settle.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);
/// See [`DeliveryPolicy::backoff`].
const MAX_BACKOFF_STEPS: u32 = 1_000;
/// The metric label for a signer name that is not configured, so a name
/// from Redis cannot add label values.
const UNKNOWN_TARGET: &str = "unknown";

/// The signing secrets by name (`subscriber:crm`, `client:billing`, ...).
/// `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Signers {
    secrets: HashMap<String, SecretString>,
}

impl Signers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the secret for `name`.
    pub fn insert(&mut self, name: impl Into<String>, secret: SecretString) {
        self.secrets.insert(name.into(), secret);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.secrets.contains_key(name)
    }

    fn get(&self, name: &str) -> Option<&SecretString> {
        self.secrets.get(name)
    }
}

impl FromIterator<(String, SecretString)> for Signers {
    fn from_iter<I: IntoIterator<Item = (String, SecretString)>>(iter: I) -> Self {
        Self {
            secrets: iter.into_iter().collect(),
        }
    }
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Signers").field("names", &names).finish()
    }
}

/// How deliveries are attempted.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// Attempts in all (the first included) before a notification is dead.
    pub max_attempts: u32,
    /// The delay before the first retry.
    pub initial_backoff: Duration,
    /// The longest delay between attempts (jitter included).
    pub max_backoff: Duration,
    /// Each delay is the previous one times this (before jitter).
    pub backoff_factor: f32,
    /// The whole POST, connecting included.
    pub timeout: Duration,
    /// POSTs in flight at once, per worker.
    pub concurrency: usize,
    /// An entry read but not settled for this long belongs to a worker that
    /// is gone; another takes it over. Must exceed `timeout` by a margin, or
    /// slow deliveries are taken over (and sent twice).
    pub claim_idle: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 15,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            backoff_factor: 2.0,
            timeout: Duration::from_secs(5),
            concurrency: 32,
            claim_idle: Duration::from_secs(60),
        }
    }
}

impl DeliveryPolicy {
    /// The delay after the `failures`-th failed attempt (1 = after the first):
    /// `initial * factor^(failures-1)` plus up to as much again in jitter,
    /// never more than `max_backoff`.
    pub fn backoff(&self, failures: u32) -> Duration {
        // Past this many steps the delay has long reached the maximum (for
        // any factor worth using); the cap keeps a huge count cheap.
        let nth = usize::try_from(failures.saturating_sub(1).min(MAX_BACKOFF_STEPS)).unwrap_or(0);
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(self.backoff_factor)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(nth)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// What every delivery task shares.
struct Context {
    outbox: Outbox,
    http: Transport,
    signers: Signers,
    policy: DeliveryPolicy,
    metrics: NotifyMetrics,
}

/// What the delivery loop of one worker needs.
pub struct Deliveries {
    pub outbox: Outbox,
    /// The HTTP clients, subscribers' and callbacks' (`[callbacks]`).
    pub http: Transport,
    pub signers: Signers,
    pub policy: DeliveryPolicy,
    /// This worker's name in the consumer group (unique per worker
    /// process, e.g. host and pid).
    pub consumer: String,
    pub metrics: NotifyMetrics,
    /// Tells the loop when the outbox or the retry set changes.
    pub watcher: KeyWatcher,
}

/// Delivers notifications from the outbox until `shutdown` is cancelled.
/// Redis errors are logged and retried; this returns only on shutdown.
pub async fn run(deliveries: Deliveries, shutdown: CancellationToken) {
    let Deliveries {
        outbox,
        http,
        signers,
        policy,
        consumer,
        metrics,
        watcher,
    } = deliveries;
    let concurrency = policy.concurrency.max(1);
    let grace = policy.timeout.saturating_add(SHUTDOWN_MARGIN);
    let claim_every = (policy.claim_idle / 2).clamp(CLAIM_EVERY_MIN, CLAIM_EVERY_MAX);
    // The first stale-entry look is at once: this worker may be replacing
    // one that crashed.
    let mut reader = outbox.consumer(
        &consumer,
        Claim::Stale {
            min_idle: policy.claim_idle,
            every: claim_every,
        },
    );
    let ctx = Arc::new(Context {
        outbox,
        http,
        signers,
        policy,
        metrics,
    });
    let watched = [NOTIFY_OUTBOX.to_owned(), NOTIFY_RETRY.to_owned()];
    let wake = Arc::new(Notify::new());
    let mut armed = false;
    // A wake-up may be a retry's ZADD: promote after the read that follows
    // it, so that a short read arms first and one promotion serves both.
    let mut woken = false;
    let mut in_flight = InFlight::default();
    // At once: retries may have come due while no worker ran.
    let mut next_promote = Some(Instant::now());

    while !shutdown.is_cancelled() {
        while let Some(ended) = in_flight.tasks.try_join_next_with_id() {
            next_promote = earliest(next_promote, in_flight.ended(ended));
        }
        if next_promote.is_some_and(|at| at <= Instant::now()) {
            let (next, moved) = promote(&ctx).await;
            next_promote = next;
            if moved {
                // Read what moved now, rather than when Redis reports it.
                reader.woken();
            }
        }

        let free = concurrency.saturating_sub(in_flight.len());
        // Read while there is room and the outbox may hold more: not when
        // it is drained and armed, since then a change wakes the loop.
        if free > 0 && !(armed && reader.caught_up()) {
            match reader.next(free, &in_flight.held).await {
                Ok(entries) => {
                    for entry in entries {
                        in_flight.spawn(&ctx, entry);
                    }
                    if reader.caught_up() && !armed {
                        match watcher.arm(&watched, &wake).await {
                            Ok(()) => {
                                armed = true;
                                // Read and promote once more: an entry or
                                // a retry added between the last look and
                                // the arm wakes nobody.
                                reader.woken();
                                next_promote = Some(Instant::now());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot watch the notification outbox");
                                pause(&shutdown, REDIS_ERROR_PAUSE).await;
                            }
                        }
                    }
                    // Once per wake-up; when the loop just armed, the
                    // promotion above is the same one.
                    if std::mem::take(&mut woken) {
                        next_promote = Some(Instant::now());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the notification outbox");
                    armed = false;
                    pause(&shutdown, REDIS_ERROR_PAUSE).await;
                }
            }
            continue;
        }

        // With every slot busy, the consumer's own steps (which hand out
        // entries) wait for a delivery to end.
        let consumer_due = if free > 0 {
            reader.next_due().map(Instant::from_std)
        } else {
            None
        };
        let until = earliest(next_promote, consumer_due);
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = wake.notified() => {
                // Redis forgot the keys when it reported one: arm again
                // once caught up.
                armed = false;
                reader.woken();
                woken = true;
            }
            Some(ended) = in_flight.tasks.join_next_with_id() => {
                next_promote = earliest(next_promote, in_flight.ended(ended));
            }
            () = sleep_until(until) => {}
        }
    }

    // Stop reading; let what is in flight settle, within bounds.
    let tasks = &mut in_flight.tasks;
    let unsettled = tasks.len();
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            unfinished = tasks.len(),
            "notification deliveries did not finish before shutdown; they stay pending in redis"
        );
        tasks.shutdown().await;
    } else if unsettled > 0 {
        tracing::info!(
            in_flight = unsettled,
            "notification deliveries in flight finished at shutdown"
        );
    }
}

/// The deliveries in flight: their tasks, and the outbox entries they
/// hold, which the consumer must not hand out again. A task yields when
/// the retry it scheduled is due, if it scheduled one.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Option<Instant>>,
    /// Each task's entry, to release it however the task ended (a panic
    /// returns no value).
    entries: HashMap<tokio::task::Id, String>,
    held: HashSet<String>,
}

impl InFlight {
    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn spawn(&mut self, ctx: &Arc<Context>, entry: StreamId) {
        let task = self
            .tasks
            .spawn(deliver(Arc::clone(ctx), pending_from_entry(&entry)));
        self.held.insert(entry.id.clone());
        self.entries.insert(task.id(), entry.id);
    }

    /// A task ended: its entry is free. Returns when the retry it
    /// scheduled is due.
    fn ended(
        &mut self,
        ended: Result<(tokio::task::Id, Option<Instant>), JoinError>,
    ) -> Option<Instant> {
        let (task, retry_due) = match ended {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(error = %e, "a notification delivery task failed");
                (e.id(), None)
            }
        };
        if let Some(entry) = self.entries.remove(&task) {
            self.held.remove(&entry);
        }
        retry_due
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps `duration` or until shutdown.
async fn pause(shutdown: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Moves due retries back into the stream and sets the pending gauge;
/// returns when to promote next (at once after a full batch, as more may be
/// due; when the earliest remaining retry is due; or `None`, not until
/// something changes, when the retry set is empty) and whether any moved.
async fn promote(ctx: &Context) -> (Option<Instant>, bool) {
    match ctx.outbox.promote_due(unix_ms(), PROMOTE_BATCH).await {
        Ok(promoted) => {
            if promoted.dropped > 0 {
                tracing::warn!(
                    dropped = promoted.dropped,
                    "dropped malformed entries from the notification retry set"
                );
            }
            let pending = promoted.queued.saturating_add(promoted.retrying);
            ctx.metrics
                .pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            let now = Instant::now();
            let moved = promoted.moved > 0;
            if usize::try_from(promoted.moved + promoted.dropped).is_ok_and(|n| n >= PROMOTE_BATCH)
            {
                return (Some(now), moved);
            }
            let next = promoted.next_due_ms.map(|due_ms| {
                let wait = u64::try_from(due_ms.saturating_sub(unix_ms())).unwrap_or(0);
                now + Duration::from_millis(wait)
            });
            (next, moved)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot promote due notification retries");
            (Some(Instant::now() + REDIS_ERROR_PAUSE), false)
        }
    }
}

/// One delivery attempt and its settlement in Redis.
/// Returns when the retry it scheduled is due, if it scheduled one.
async fn deliver(ctx: Arc<Context>, entry: Result<Pending, Malformed>) -> Option<Instant> {
    let pending = match entry {
        Ok(pending) => pending,
        Err(malformed) => {
            tracing::warn!(entry_id = %malformed.entry_id, problem = %malformed.problem,
                "moving a malformed notification to the dead stream");
            settle_dead(
                &ctx,
                &malformed.entry_id,
                &malformed.notification,
                0,
                &malformed.problem,
                UNKNOWN_TARGET,
            )
            .await;
            return None;
        }
    };
    let n = &pending.notification;
    let Some(secret) = ctx.signers.get(&n.signer) else {
        let problem = format!(
            "unknown signer `{}`: no such secret is configured (configuration changed?)",
            n.signer
        );
        settle_dead(
            &ctx,
            &pending.entry_id,
            n,
            pending.attempts,
            &problem,
            UNKNOWN_TARGET,
        )
        .await;
        return None;
    };
    let target = n.signer.as_str();
    let destination = Destination::of(n);
    let url = match reqwest::Url::parse(&n.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        _ => {
            settle_dead(
                &ctx,
                &pending.entry_id,
                n,
                pending.attempts,
                "invalid url: not an absolute http(s) URL",
                target,
            )
            .await;
            return None;
        }
    };

    if let Err(refusal) = ctx.http.check(destination, &url) {
        settle_refused(&ctx, &pending, pending.attempts, &refusal, target).await;
        return None;
    }

    let timestamp = unix_secs();
    let signature = sign(
        secret.expose_secret().as_bytes(),
        timestamp,
        n.body.as_bytes(),
    );
    let started = Instant::now();
    let result = ctx
        .http
        .client(destination)
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .timeout(ctx.policy.timeout)
        .body(n.body.clone())
        .send()
        .await;
    ctx.metrics
        .delivery_duration
        .with_label_values(&[target])
        .observe(started.elapsed().as_secs_f64());

    let attempts = pending.attempts.saturating_add(1);
    let failure = match result {
        Ok(response) if response.status().is_success() => {
            ctx.http.discard(response).await;
            None
        }
        Ok(response) if response.status().is_redirection() => {
            // The receiver's answer; the same URL would answer the same.
            let problem = format!(
                "HTTP {}: redirects are not followed (fix the URL, then replay)",
                response.status().as_u16()
            );
            ctx.http.discard(response).await;
            ctx.metrics
                .attempts_failed
                .with_label_values(&[target])
                .inc();
            tracing::warn!(entry_id = %pending.entry_id, target, attempts, error = %problem,
                "notification given up on");
            settle_dead(&ctx, &pending.entry_id, n, attempts, &problem, target).await;
            return None;
        }
        Ok(response) => {
            let status = response.status().as_u16();
            ctx.http.discard(response).await;
            Some(format!("HTTP {status}"))
        }
        Err(e) => {
            if let Some(refusal) = Refusal::behind(&e) {
                settle_refused(&ctx, &pending, attempts, &refusal, target).await;
                return None;
            }
            Some(describe(&e, ctx.policy.timeout))
        }
    };
    let Some(failure) = failure else {
        ctx.metrics.delivered.with_label_values(&[target]).inc();
        if let Err(e) = ctx.outbox.delivered(&pending.entry_id).await {
            // It stays pending and is delivered again after `claim_idle`.
            tracing::warn!(error = %e, entry_id = %pending.entry_id, target,
                "notification delivered but not acknowledged; it will be sent again");
        }
        return None;
    };

    ctx.metrics
        .attempts_failed
        .with_label_values(&[target])
        .inc();
    if attempts >= ctx.policy.max_attempts {
        tracing::warn!(entry_id = %pending.entry_id, target, attempts, error = %failure,
            "notification given up on");
        settle_dead(&ctx, &pending.entry_id, n, attempts, &failure, target).await;
        return None;
    }
    let delay = ctx.policy.backoff(attempts);
    let due_ms = unix_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    tracing::debug!(entry_id = %pending.entry_id, target, attempts, error = %failure,
        retry_in_ms = delay.as_millis(), "notification delivery failed; will retry");
    match ctx
        .outbox
        .retry_at(&pending, attempts, due_ms, &failure)
        .await
    {
        // The loop may not be watching the retry set now: it promotes
        // this retry when due.
        Ok(()) => Some(Instant::now() + delay),
        Err(e) => {
            tracing::warn!(error = %e, entry_id = %pending.entry_id, target,
                "cannot schedule a notification retry; it stays pending");
            None
        }
    }
}

/// A callback that may not be sent where it leads: given up on at once,
/// counted by reason, logged with the host and address the refusal names
/// (never the URL's path or query, which may carry a token).
async fn settle_refused(
    ctx: &Context,
    pending: &Pending,
    attempts: u32,
    refusal: &Refusal,
    target: &str,
) {
    ctx.metrics
        .refused
        .with_label_values(&[refusal.reason()])
        .inc();
    tracing::warn!(entry_id = %pending.entry_id, target, reason = refusal.reason(),
        error = %refusal, "callback not sent: its address may not be called; given up on");
    let problem = refusal.to_string();
    settle_dead(
        ctx,
        &pending.entry_id,
        &pending.notification,
        attempts,
        &problem,
        target,
    )
    .await;
}

async fn settle_dead(
    ctx: &Context,
    entry_id: &str,
    n: &crate::Notification,
    attempts: u32,
    last_error: &str,
    target: &str,
) {
    ctx.metrics.dead_letters.with_label_values(&[target]).inc();
    if let Err(e) = ctx.outbox.bury(entry_id, n, attempts, last_error).await {
        tracing::warn!(error = %e, entry_id, target,
            "cannot move a notification to the dead stream; it stays pending");
    }
}

/// A failed request in words, without its URL (a callback URL may carry a
/// token in its query).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_request() {
        "request failed"
    } else {
        "error"
    };
    // The innermost cause says most ("Connection refused (os error 111)").
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    match innermost {
        _ if e.is_timeout() => format!("{kind} after {timeout:?}"),
        Some(c) => format!("{kind}: {c}"),
        None => kind.to_owned(),
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn unix_secs() -> i64 {
    unix_ms() / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_under_the_maximum() {
        let policy = DeliveryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            ..DeliveryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(
                first >= Duration::from_secs(1) && first < Duration::from_secs(2),
                "{first:?}"
            );
            let fourth = policy.backoff(4);
            assert!(
                fourth >= Duration::from_secs(8) && fourth < Duration::from_secs(16),
                "{fourth:?}"
            );
            assert!(policy.backoff(30) <= Duration::from_secs(300));
            assert!(policy.backoff(u32::MAX) <= Duration::from_secs(300));
        }
        // Zero failures is treated as the first.
        assert!(policy.backoff(0) < Duration::from_secs(2));
    }

    #[test]
    fn signers_debug_shows_names_only() {
        let mut signers = Signers::new();
        signers.insert("subscriber:crm", SecretString::from("s3cret-value"));
        let shown = format!("{signers:?}");
        assert!(shown.contains("subscriber:crm"), "{shown}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }
}
