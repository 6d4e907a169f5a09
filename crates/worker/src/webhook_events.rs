//! Processing Meta's webhook events behind the api's 200: every worker reads
//! the events stream through the `workers` group, so each stored body is
//! handled by one worker, and one that dies leaves its events pending for
//! another to claim.
//!
//! - An inbound message opens the user's window and is forwarded to the
//!   subscribers; one seen before changes nothing.
//! - A status moves its message forward (never back), is forwarded, and
//!   counts what Meta says the message costs (`costs`); a
//!   `failed` one is judged by the same rules as a failed send: a transient
//!   code is retried after backoff, 131047 closes the window and resends the
//!   fallback template once, anything else fails the message into the
//!   dead-letter stream.
//!
//! Forwarding comes before the record, so a crash in between forwards twice
//! rather than never (at least once); the record counts each event once.
//!
//! A status can outrun the record of the send it is about: Meta's webhook
//! may come before its answer to the call, and a worker is woken by the
//! webhook at once. Such an event (it names one of our messages, whose
//! record does not have its wamid yet) is kept pending and tried again,
//! shortly and then less often, for up to [`EARLY_STATUS_GRACE`]; then it
//! is given up (`gateway_webhook_events_total{kind="given_up"}`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::rules::retry::fail_reason;
use gateway_domain::rules::{ErrorClass, Failure, Verdict, classify_code};
use gateway_domain::webhook::{
    self, InboundMessage, MetaError, MetaStatus, StatusUpdate, WebhookEvent,
};
use gateway_queue::{
    Claim, QueueError, Requeue, StatusChange, StatusResult, StatusView, StoredEvent, keys,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Worker, unix_ms};
use gateway_notify::Notifier;

/// Events read per round.
const BATCH: usize = 64;
/// An event another worker took this long ago and did not finish is claimed.
const STALE_AFTER: Duration = Duration::from_secs(30);
const CLAIM_EVERY: Duration = Duration::from_secs(10);
/// After a Redis error, the next read waits this long.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How long a status that came before the record of its send is kept.
pub(crate) const EARLY_STATUS_GRACE: Duration = Duration::from_secs(60);
/// The first retry of such a status, doubling up to [`EARLY_RETRY_MAX`].
const EARLY_RETRY_MIN: Duration = Duration::from_millis(100);
const EARLY_RETRY_MAX: Duration = Duration::from_secs(5);

/// An event kept for later: one of its statuses came before its record.
struct Deferred {
    event: StoredEvent,
    retry_at: Instant,
    pause: Duration,
}

/// Reads the events stream until `stop`: processes what there is, then
/// waits for Redis to report new events (no polling), or for the next
/// look for stale ones.
pub(crate) async fn run(worker: Arc<Worker>, notifier: Arc<Notifier>, stop: CancellationToken) {
    let mut consumer = worker.queue.consumer(
        keys::EVENTS,
        keys::CONSUMER_GROUP,
        &worker.consumer,
        Claim::Stale {
            min_idle: STALE_AFTER,
            every: CLAIM_EVERY,
        },
    );
    let wake = Arc::new(Notify::new());
    let mut armed = false;
    // Deferred events stay pending: the consumer must not hand them out
    // again while this loop holds them.
    let mut deferred: Vec<Deferred> = Vec::new();
    let mut held = HashSet::new();
    while !stop.is_cancelled() {
        retry_deferred(&worker, &notifier, &mut deferred, &mut held).await;
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            batch = consumer.next(BATCH, &held) => batch,
        };
        match batch {
            Ok(entries) if !entries.is_empty() => {
                for entry in entries {
                    let event = StoredEvent::from_entry(entry);
                    if !handle(&worker, &notifier, event, None, &mut deferred, &mut held).await {
                        break;
                    }
                }
            }
            Ok(_) if !armed => {
                // Caught up: be woken by the next event, then read once
                // more for one that came in between.
                match worker.watcher.arm(&[keys::EVENTS.to_owned()], &wake).await {
                    Ok(()) => {
                        armed = true;
                        consumer.woken();
                    }
                    Err(error) => {
                        redis_error(&worker, &error);
                        pause(&stop, ERROR_PAUSE).await;
                    }
                }
            }
            Ok(_) => {
                let until = [
                    consumer.next_due(),
                    deferred.iter().map(|d| d.retry_at).min(),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + CLAIM_EVERY);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake.notified() => {
                        armed = false;
                        consumer.woken();
                    }
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
            Err(error) => {
                redis_error(&worker, &error);
                armed = false;
                pause(&stop, ERROR_PAUSE).await;
            }
        }
    }
}

/// Processes one event and finishes it, or keeps it for later (after
/// `kept_for`, if it was kept before); false when Redis failed (the event
/// stays pending, claimed again once stale).
async fn handle(
    worker: &Worker,
    notifier: &Notifier,
    event: StoredEvent,
    kept_for: Option<Duration>,
    deferred: &mut Vec<Deferred>,
    held: &mut HashSet<String>,
) -> bool {
    let age = Duration::from_millis(u64::try_from(unix_ms() - event.received_ms).unwrap_or(0));
    match process(worker, notifier, &event, age >= EARLY_STATUS_GRACE).await {
        Ok(Processed::Done) => {
            held.remove(&event.entry_id);
            if let Err(error) = worker.queue.finish_event(&event.entry_id).await {
                redis_error(worker, &error);
            }
            true
        }
        Ok(Processed::Early) => {
            tracing::debug!(entry_id = %event.entry_id, "a status came before its record; trying it again shortly");
            let pause = kept_for.map_or(EARLY_RETRY_MIN, |p| (p * 2).min(EARLY_RETRY_MAX));
            held.insert(event.entry_id.clone());
            deferred.push(Deferred {
                event,
                retry_at: Instant::now() + pause,
                pause,
            });
            true
        }
        Err(error) => {
            held.remove(&event.entry_id);
            redis_error(worker, &error);
            false
        }
    }
}

/// Tries again the kept events that are due.
async fn retry_deferred(
    worker: &Worker,
    notifier: &Notifier,
    deferred: &mut Vec<Deferred>,
    held: &mut HashSet<String>,
) {
    let now = Instant::now();
    let (due, later): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(deferred)
        .into_iter()
        .partition(|d| d.retry_at <= now);
    *deferred = later;
    for kept in due {
        handle(
            worker,
            notifier,
            kept.event,
            Some(kept.pause),
            deferred,
            held,
        )
        .await;
    }
}

async fn pause(stop: &CancellationToken, duration: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

fn redis_error(worker: &Worker, error: &dyn std::fmt::Display) {
    tracing::warn!(%error, "processing webhook events failed; will retry");
    worker.metrics.redis_failed("webhook_event");
}

/// An error that leaves the event pending, to be tried again.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Notify(#[from] gateway_notify::NotifyError),
}

/// What processing an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Processed {
    Done,
    /// A status came before the record of its send: try again later.
    Early,
}

/// Processes every change in one stored body. Processing again is harmless
/// (each status and inbound message counts once), so a body with one early
/// status is simply processed again later; with `give_up`, it is not.
async fn process(
    worker: &Worker,
    notifier: &Notifier,
    event: &StoredEvent,
    give_up: bool,
) -> Result<Processed, ProcessError> {
    let events = match webhook::parse(&event.body) {
        Ok(events) => events,
        Err(error) => {
            // The api stored only bodies that parsed; this one never will.
            tracing::error!(entry_id = %event.entry_id, %error, "stored webhook does not parse; dropping it");
            count(worker, "malformed");
            return Ok(Processed::Done);
        }
    };
    let mut account_updates = false;
    let mut processed = Processed::Done;
    for event in events {
        let pnid = match &event {
            WebhookEvent::Status(s) => &s.phone_number_id,
            WebhookEvent::Inbound(m) => &m.phone_number_id,
            WebhookEvent::Other { kind, .. }
                if kind == "message_template_status_update"
                    || kind == "template_category_update"
                    || kind == "phone_number_quality_update"
                    || kind == "business_capability_update" =>
            {
                // Read from the body below, once for all of its changes.
                count(worker, kind);
                account_updates = true;
                continue;
            }
            WebhookEvent::Other { kind, .. } => {
                tracing::debug!(kind, "webhook event not acted on");
                count(worker, "other");
                continue;
            }
        };
        let Some(sender) = worker.settings.sender(pnid).cloned() else {
            count(worker, "unknown_sender");
            continue;
        };
        match event {
            WebhookEvent::Status(update) => {
                if status(worker, notifier, &sender, &update, give_up).await? == Processed::Early {
                    processed = Processed::Early;
                }
            }
            WebhookEvent::Inbound(message) => inbound(worker, notifier, &sender, &message).await?,
            WebhookEvent::Other { .. } => {}
        }
    }
    if account_updates && processed == Processed::Done {
        crate::sender_health::handle(worker, webhook::account_updates(&event.body)).await;
    }
    Ok(processed)
}

fn count(worker: &Worker, kind: &str) {
    worker
        .metrics
        .webhook_events
        .with_label_values(&[kind])
        .inc();
}

async fn inbound(
    worker: &Worker,
    notifier: &Notifier,
    sender: &SenderSettings,
    message: &InboundMessage,
) -> Result<(), ProcessError> {
    let pnid = &sender.phone_number_id;
    // Forwarded before it is recorded (at least once); the check for a
    // repeat is needed only when there is someone to forward it to, since
    // recording counts it once anyway.
    if notifier.forwards_inbound() {
        if worker.queue.inbound_seen(pnid, &message.wamid).await? {
            count(worker, "duplicate");
            return Ok(());
        }
        notifier.inbound(sender, message).await?;
    }
    let recipients: Vec<&str> = message.recipient_keys().collect();
    let new = worker
        .queue
        .record_inbound(
            pnid,
            &message.wamid,
            &recipients,
            message.timestamp_ms,
            unix_ms(),
        )
        .await?;
    crate::suppressions::on_inbound(worker, sender, message, unix_ms()).await?;
    if new {
        count(worker, "inbound");
        worker
            .metrics
            .windows_opened
            .with_label_values(&[sender.name.as_str()])
            .inc();
    } else {
        count(worker, "duplicate");
    }
    Ok(())
}

async fn status(
    worker: &Worker,
    notifier: &Notifier,
    sender: &SenderSettings,
    update: &StatusUpdate,
    give_up: bool,
) -> Result<Processed, ProcessError> {
    let pnid = &sender.phone_number_id;
    // The status names one of this sender's messages: if its record does
    // not show this send yet, the record is on its way.
    let ours = update
        .callback_data
        .as_deref()
        .and_then(gateway_domain::MessageId::parse)
        .is_some_and(|id| id.phone_number_id() == pnid.as_str());
    let early = |kind: &str| {
        if ours && !give_up {
            return Processed::Early;
        }
        count(worker, if ours { "given_up" } else { kind });
        Processed::Done
    };
    let view = worker
        .queue
        .status_view(
            pnid,
            &update.wamid,
            update.callback_data.as_deref(),
            update.status,
        )
        .await?;
    let Some(view) = view else {
        return Ok(early("unknown_message"));
    };
    if view.wamid == update.wamid {
        // Before the check for a repeat: the cost counts keep marks of
        // their own, so a status applied by a try that then failed is
        // still counted, and only once.
        crate::costs::count(worker, sender, &view, update).await?;
    }
    if view.seen {
        count(worker, "duplicate");
        return Ok(Processed::Done);
    }
    if view.wamid != update.wamid {
        // For an earlier send of a message sent again, or for the new send
        // whose record is on its way.
        return Ok(early("stale"));
    }
    let now_ms = unix_ms();
    let mut reason = "";
    if update.status == MetaStatus::Failed {
        let unknown = MetaError {
            code: 0,
            title: "failed without an error from Meta".into(),
        };
        let error = update.error.as_ref().unwrap_or(&unknown);
        let class = classify_code(error.code);
        crate::suppressions::record_failure(worker, sender, &view.recipient, error.code, now_ms)
            .await?;
        let fallback_available =
            !view.fallback_used && (view.has_fallback || sender.fallback_template.is_some());
        let age = Duration::from_millis(u64::try_from(now_ms - view.due_ms).unwrap_or(0));
        let verdict = worker.retry_policy.judge(&Failure {
            class,
            attempts: view.attempts,
            age,
            fallback_available,
            expires_in: None,
            reported_later: true,
        });
        tracing::info!(message_id = %view.message_id, code = error.code, class = class.as_str(), ?verdict, "Meta reported a failure");
        let requeue_after = |delay: Duration, fallback: bool| Requeue {
            wamid: &update.wamid,
            at_ms: update.timestamp_ms,
            now_ms,
            error,
            due_ms: now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            fallback,
            close_window: fallback,
        };
        match verdict {
            Verdict::Retry { delay, .. } => {
                requeue(worker, sender, &view, requeue_after(delay, false)).await?;
                return Ok(Processed::Done);
            }
            Verdict::Fallback => {
                requeue(worker, sender, &view, requeue_after(Duration::ZERO, true)).await?;
                return Ok(Processed::Done);
            }
            // Without a deadline to check, no expiry comes; a sender-level
            // code reported later comes as a failure (see `judge`).
            Verdict::Expire | Verdict::PauseSender => reason = fail_reason::PERMANENT_ERROR,
            Verdict::Fail { reason: why } => {
                if class == ErrorClass::WindowClosed {
                    worker.queue.close_window(pnid, &view.recipient).await?;
                }
                reason = why;
            }
        }
    }
    notifier.status(sender, &view, update).await?;
    let result = worker
        .queue
        .apply_status(
            pnid,
            &view.message_id,
            StatusChange {
                wamid: &update.wamid,
                status: update.status,
                at_ms: update.timestamp_ms,
                now_ms,
                error: update.error.as_ref(),
                reason,
            },
        )
        .await?;
    count(worker, "status");
    if result == StatusResult::Moved {
        moved(worker, sender, &view, update);
    }
    Ok(Processed::Done)
}

/// Queues the message again after an asynchronous failure.
async fn requeue(
    worker: &Worker,
    sender: &SenderSettings,
    view: &StatusView,
    requeue: Requeue<'_>,
) -> Result<(), ProcessError> {
    let code = requeue.error.code;
    let result = worker
        .queue
        .requeue_failed(&sender.phone_number_id, view, requeue)
        .await?;
    count(worker, "status");
    if result == StatusResult::Moved {
        let class = classify_code(code);
        worker
            .metrics
            .retries
            .with_label_values(&[sender.name.as_str(), class.as_str()])
            .inc();
    }
    Ok(())
}

/// Metrics for a status that moved its message.
fn moved(worker: &Worker, sender: &SenderSettings, view: &StatusView, update: &StatusUpdate) {
    let name = sender.name.as_str();
    let metrics = &worker.metrics;
    metrics
        .statuses
        .with_label_values(&[name, update.status.as_str()])
        .inc();
    match update.status {
        MetaStatus::Delivered => {
            let seconds = (update.timestamp_ms - view.created_ms).max(0) as f64 / 1000.0;
            metrics
                .accept_to_delivered
                .with_label_values(&[name])
                .observe(seconds);
        }
        MetaStatus::Failed => {
            let code = update.error.as_ref().map_or(0, |e| e.code).to_string();
            metrics.failed.with_label_values(&[name, &code]).inc();
            metrics.dead_letters.with_label_values(&[name, &code]).inc();
        }
        MetaStatus::Sent | MetaStatus::Read => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_domain::rules::RetryPolicy;

    fn verdict(code: i64, attempts: u32, fallback_available: bool) -> Verdict {
        RetryPolicy::default().judge(&Failure {
            class: classify_code(code),
            attempts,
            age: Duration::from_secs(10),
            fallback_available,
            expires_in: None,
            reported_later: true,
        })
    }

    #[test]
    fn a_transient_asynchronous_failure_is_retried_after_backoff() {
        assert!(
            matches!(verdict(131000, 1, false), Verdict::Retry { delay, .. } if delay >= Duration::from_secs(1))
        );
        assert_eq!(
            verdict(131000, RetryPolicy::default().max_attempts, false),
            Verdict::Fail {
                reason: "attempts_exhausted"
            }
        );
    }

    #[test]
    fn a_closed_window_resends_the_fallback_once() {
        assert_eq!(verdict(131047, 1, true), Verdict::Fallback);
        assert_eq!(
            verdict(131047, 2, false),
            Verdict::Fail {
                reason: "window_closed"
            }
        );
    }

    #[test]
    fn permanent_and_sender_level_codes_fail_the_message() {
        assert!(matches!(verdict(131026, 1, true), Verdict::Fail { .. }));
        assert!(matches!(verdict(190, 1, true), Verdict::Fail { .. }));
    }
}
