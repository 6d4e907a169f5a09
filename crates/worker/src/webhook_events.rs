//! Processing Meta's webhook events behind the api's 200: every worker reads
//! the events stream through the `workers` group, so each stored body is
//! handled by one worker, and one that dies leaves its events pending for
//! another to claim.
//!
//! - An inbound message opens the user's window and is forwarded to the
//!   subscribers; one seen before changes nothing.
//! - A status moves its message forward (never back) and is forwarded; a
//!   `failed` one is judged by the same rules as a failed send: a transient
//!   code is retried after backoff, 131047 closes the window and resends the
//!   fallback template once, anything else fails the message into the
//!   dead-letter stream.
//!
//! Forwarding comes before the record, so a crash in between forwards twice
//! rather than never (at least once); the record counts each event once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::rules::retry::fail_reason;
use gateway_domain::rules::{ErrorClass, RetryDecision, classify_code};
use gateway_domain::webhook::{
    self, InboundMessage, MetaError, MetaStatus, StatusUpdate, WebhookEvent,
};
use gateway_queue::{QueueError, Requeue, StatusChange, StatusResult, StatusView, StoredEvent};
use tokio_util::sync::CancellationToken;

use crate::notifications::Notifier;
use crate::{Worker, unix_ms};

/// Events read per round.
const BATCH: usize = 64;
/// An event another worker took this long ago and did not finish is claimed.
const STALE_AFTER_MS: u64 = 30_000;
const CLAIM_EVERY: Duration = Duration::from_secs(5);
const IDLE_MIN: Duration = Duration::from_millis(5);
const IDLE_MAX: Duration = Duration::from_millis(200);

/// What an asynchronous failure comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FailureAction {
    /// Queue the message again, due after `delay`.
    Retry { delay: Duration },
    /// Close the window and resend as the fallback template now.
    Fallback,
    /// The message fails for good, with this reason.
    Fail { reason: &'static str },
}

/// The retry policy's decision for a failure Meta reported by webhook.
/// Unlike a failed send, nothing here pauses a sender: the message was
/// accepted, so the sender's token and number were fine.
pub(crate) fn failure_action(decision: RetryDecision) -> FailureAction {
    match decision {
        RetryDecision::RetryAfter { delay, .. } => FailureAction::Retry { delay },
        RetryDecision::UseFallback => FailureAction::Fallback,
        RetryDecision::Fail { reason } => FailureAction::Fail { reason },
        RetryDecision::PauseSender => FailureAction::Fail {
            reason: fail_reason::PERMANENT_ERROR,
        },
    }
}

pub(crate) async fn run(worker: Arc<Worker>, notifier: Arc<Notifier>, stop: CancellationToken) {
    let mut pause = IDLE_MIN;
    let mut last_claim: Option<Instant> = None;
    let mut group_ready = false;
    while !stop.is_cancelled() {
        if !group_ready {
            group_ready = worker.queue.ensure_events_group().await.is_ok();
        }
        let claim_due = last_claim.is_none_or(|at| at.elapsed() >= CLAIM_EVERY);
        let batch = if claim_due {
            last_claim = Some(Instant::now());
            worker
                .queue
                .claim_stale_events(&worker.consumer, STALE_AFTER_MS, BATCH)
                .await
        } else {
            worker.queue.read_events(&worker.consumer, BATCH).await
        };
        let idle = match batch {
            Ok(events) if events.is_empty() => true,
            Ok(events) => {
                for event in &events {
                    if let Err(error) = process(&worker, &notifier, event).await {
                        // Left pending: claimed again once stale.
                        redis_error(&worker, &error);
                        break;
                    }
                    if let Err(error) = worker.queue.finish_event(&event.entry_id).await {
                        redis_error(&worker, &error);
                    }
                }
                false
            }
            Err(error) => {
                redis_error(&worker, &error);
                group_ready = false;
                true
            }
        };
        pause = if idle {
            (pause * 2).min(IDLE_MAX)
        } else {
            IDLE_MIN
        };
        if idle {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

fn redis_error(worker: &Worker, error: &dyn std::fmt::Display) {
    tracing::warn!(%error, "processing webhook events failed; will retry");
    worker
        .metrics
        .redis_errors
        .with_label_values(&["webhook_event"])
        .inc();
}

/// An error that leaves the event pending, to be tried again.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Notify(#[from] gateway_notify::NotifyError),
}

async fn process(
    worker: &Worker,
    notifier: &Notifier,
    event: &StoredEvent,
) -> Result<(), ProcessError> {
    let events = match webhook::parse(&event.body) {
        Ok(events) => events,
        Err(error) => {
            // The api stored only bodies that parsed; this one never will.
            tracing::error!(entry_id = %event.entry_id, %error, "stored webhook does not parse; dropping it");
            count(worker, "malformed");
            return Ok(());
        }
    };
    let mut account_updates = false;
    for event in events {
        let pnid = match &event {
            WebhookEvent::Status(s) => &s.phone_number_id,
            WebhookEvent::Inbound(m) => &m.phone_number_id,
            WebhookEvent::Other { kind, .. }
                if kind == "message_template_status_update"
                    || kind == "phone_number_quality_update" =>
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
            WebhookEvent::Status(update) => status(worker, notifier, &sender, &update).await?,
            WebhookEvent::Inbound(message) => inbound(worker, notifier, &sender, &message).await?,
            WebhookEvent::Other { .. } => {}
        }
    }
    if account_updates {
        crate::sender_health::handle(worker, webhook::account_updates(&event.body)).await;
    }
    Ok(())
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
) -> Result<(), ProcessError> {
    let pnid = &sender.phone_number_id;
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
        count(worker, "unknown_message");
        return Ok(());
    };
    if view.seen {
        count(worker, "duplicate");
        return Ok(());
    }
    if view.wamid != update.wamid {
        count(worker, "stale");
        return Ok(());
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
        let fallback_available =
            !view.fallback_used && (view.has_fallback || sender.fallback_template.is_some());
        let age = Duration::from_millis(u64::try_from(now_ms - view.created_ms).unwrap_or(0));
        let decision = worker
            .retry_policy
            .decide(class, view.attempts, age, fallback_available);
        tracing::info!(message_id = %view.message_id, code = error.code, class = class.as_str(), ?decision, "Meta reported a failure");
        let requeue_after = |delay: Duration, fallback: bool| Requeue {
            wamid: &update.wamid,
            at_ms: update.timestamp_ms,
            now_ms,
            error,
            due_ms: now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            fallback,
            close_window: fallback,
        };
        match failure_action(decision) {
            FailureAction::Retry { delay } => {
                return requeue(worker, sender, &view, requeue_after(delay, false)).await;
            }
            FailureAction::Fallback => {
                return requeue(worker, sender, &view, requeue_after(Duration::ZERO, true)).await;
            }
            FailureAction::Fail { reason: why } => {
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
    Ok(())
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

    fn action(code: i64, attempts: u32, fallback_available: bool) -> FailureAction {
        let policy = RetryPolicy::default();
        failure_action(policy.decide(
            classify_code(code),
            attempts,
            Duration::from_secs(10),
            fallback_available,
        ))
    }

    #[test]
    fn a_transient_asynchronous_failure_is_retried_after_backoff() {
        assert!(
            matches!(action(131000, 1, false), FailureAction::Retry { delay } if delay >= Duration::from_secs(1))
        );
        assert_eq!(
            action(131000, RetryPolicy::default().max_attempts, false),
            FailureAction::Fail {
                reason: "attempts_exhausted"
            }
        );
    }

    #[test]
    fn a_closed_window_resends_the_fallback_once() {
        assert_eq!(action(131047, 1, true), FailureAction::Fallback);
        assert_eq!(
            action(131047, 2, false),
            FailureAction::Fail {
                reason: "window_closed"
            }
        );
    }

    #[test]
    fn permanent_and_sender_level_codes_fail_the_message() {
        assert!(matches!(
            action(131026, 1, true),
            FailureAction::Fail { .. }
        ));
        assert!(matches!(action(190, 1, true), FailureAction::Fail { .. }));
    }
}
