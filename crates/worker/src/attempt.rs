//! One attempt at sending one message: the window check (a free-form
//! message to a recipient whose window is closed, or closes within the
//! margin, goes as its fallback template), the Graph API call, what Meta's
//! answer means (the domain's error classes and retry policy), and the
//! record of it in Redis. The dispatcher is told what to do next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::Recipient;
use gateway_domain::rules::{
    ErrorClass, RetryDecision, TransportFailure, classify_code, classify_transport, window,
};
use gateway_graph::GraphError;
use gateway_queue::Outcome;
use gateway_telemetry::SenderMetrics;

use crate::lease::Lease;
use crate::reader::Incoming;
use crate::{Worker, unix_ms};

/// What the dispatcher does with the message's lane after an attempt.
pub(crate) enum Next {
    /// The message is finished (sent, failed, expired).
    Done,
    /// Try again at `at`; with `sender_wait`, the whole sender waits that long.
    Retry {
        at: Instant,
        sender_wait: bool,
        throttled: bool,
    },
    /// The sender is paused; the message stays first in its lane.
    Pause,
    /// The outcome could not be recorded before the lease ran out: the
    /// entry stays pending for the next owner.
    Abandon,
}

pub(crate) struct Completion {
    pub incoming: Incoming,
    pub next: Next,
}

pub(crate) async fn attempt(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    sender_metrics: Arc<SenderMetrics>,
    mut incoming: Incoming,
    lease: Lease,
) -> Completion {
    let delivery = &incoming.delivery;
    let now_ms = unix_ms();
    let age = Duration::from_millis(
        u64::try_from(now_ms - delivery.message_id.accepted_at_ms()).unwrap_or(0),
    );
    if let Some(reason) = expiry(&sender, &incoming, now_ms, age) {
        let next = record(
            &worker,
            &sender,
            &incoming,
            Outcome::Expired { reason },
            &lease,
        )
        .await;
        worker
            .metrics
            .expired
            .with_label_values(&[sender.name.as_str()])
            .inc();
        return Completion {
            incoming,
            next: next.unwrap_or(Next::Done),
        };
    }
    if !incoming.progress.fallback_used && delivery.kind != TEMPLATE_KIND {
        match worker
            .queue
            .window_opened_at(&sender.phone_number_id, &delivery.recipient)
            .await
        {
            Ok(opened) => {
                let margin = millis(worker.settings.worker.window_margin);
                if !window::allows_free_form(opened, now_ms, margin) {
                    incoming.progress.fallback_used = true;
                }
            }
            Err(error) => {
                // Without knowing the window, neither body is safe to send.
                tracing::warn!(%error, "could not read the recipient's window; retrying");
                worker
                    .metrics
                    .redis_errors
                    .with_label_values(&["window"])
                    .inc();
                return Completion {
                    incoming,
                    next: Next::Retry {
                        at: Instant::now() + WINDOW_READ_RETRY,
                        sender_wait: false,
                        throttled: false,
                    },
                };
            }
        }
    }
    let Some(body) = body_to_send(&worker, &sender, &incoming) else {
        let outcome = Outcome::Failed {
            code: 131047,
            title: "no fallback template for a closed window",
            reason: "window_closed",
        };
        let next = record(&worker, &sender, &incoming, outcome, &lease).await;
        return Completion {
            incoming,
            next: next.unwrap_or(Next::Done),
        };
    };
    let Some(endpoint) = worker.endpoints.get(&sender.phone_number_id) else {
        tracing::error!(sender = %sender.name, "no usable access token; pausing the sender");
        return Completion {
            incoming,
            next: Next::Pause,
        };
    };

    let started = Instant::now();
    let result = worker.graph.send_message(endpoint, body).await;
    incoming.progress.attempts += 1;
    let took = started.elapsed().as_secs_f64();
    match result {
        Ok(_) => sender_metrics.graph_ok.observe(took),
        Err(_) => sender_metrics.graph_error.observe(took),
    }

    let error = match result {
        Ok(accepted) => {
            sender_metrics.sent.inc();
            let waited =
                (unix_ms() - incoming.delivery.message_id.accepted_at_ms()).max(0) as f64 / 1000.0;
            sender_metrics.accept_to_send.observe(waited);
            if incoming.progress.fallback_used {
                worker
                    .metrics
                    .fallbacks
                    .with_label_values(&[sender.name.as_str()])
                    .inc();
            }
            let next = record(
                &worker,
                &sender,
                &incoming,
                Outcome::Sent {
                    wamid: &accepted.wamid,
                },
                &lease,
            )
            .await;
            return Completion {
                incoming,
                next: next.unwrap_or(Next::Done),
            };
        }
        Err(error) => error,
    };

    let class = classify(&error);
    let (code, title) = code_and_title(&error);
    if class == ErrorClass::WindowClosed {
        // Meta knows better than our records: no free-form until the user writes again.
        let recipient = &incoming.delivery.recipient;
        if let Err(error) = worker
            .queue
            .close_window(&sender.phone_number_id, recipient)
            .await
        {
            tracing::warn!(%error, "could not mark the window closed");
        }
    }
    worker
        .metrics
        .graph_errors
        .with_label_values(&[sender.name.as_str(), &code.to_string()])
        .inc();
    let fallback_available = !incoming.progress.fallback_used
        && (incoming.delivery.has_fallback() || sender.fallback_template.is_some());
    let decision =
        worker
            .retry_policy
            .decide(class, incoming.progress.attempts, age, fallback_available);
    tracing::info!(message_id = %incoming.delivery.message_id, sender = %sender.name, %error, class = class.as_str(), ?decision, "send failed");
    let now = Instant::now();
    let (outcome, next) = match decision {
        RetryDecision::RetryAfter { delay, .. }
            if incoming
                .delivery
                .expires_at_ms
                .is_some_and(|expires| now_ms + millis(delay) >= expires) =>
        {
            // The next attempt would come too late: an OTP that arrives late is worse than none.
            worker
                .metrics
                .expired
                .with_label_values(&[sender.name.as_str()])
                .inc();
            (
                Outcome::Expired {
                    reason: "expires_at",
                },
                Next::Done,
            )
        }
        RetryDecision::RetryAfter {
            delay,
            sender_backoff,
        } => {
            worker
                .metrics
                .retries
                .with_label_values(&[sender.name.as_str(), class.as_str()])
                .inc();
            let due = now_ms + millis(delay);
            (
                Outcome::Retrying {
                    code,
                    title: &title,
                    next_attempt_ms: due,
                },
                Next::Retry {
                    at: now + delay,
                    sender_wait: sender_backoff,
                    throttled: class == ErrorClass::SenderThroughput,
                },
            )
        }
        RetryDecision::UseFallback => {
            incoming.progress.fallback_used = true;
            worker
                .metrics
                .retries
                .with_label_values(&[sender.name.as_str(), class.as_str()])
                .inc();
            (
                Outcome::Retrying {
                    code,
                    title: &title,
                    next_attempt_ms: now_ms,
                },
                Next::Retry {
                    at: now,
                    sender_wait: false,
                    throttled: false,
                },
            )
        }
        RetryDecision::Fail { reason } => {
            worker
                .metrics
                .failed
                .with_label_values(&[sender.name.as_str(), &code.to_string()])
                .inc();
            worker
                .metrics
                .dead_letters
                .with_label_values(&[sender.name.as_str(), &code.to_string()])
                .inc();
            (
                Outcome::Failed {
                    code,
                    title: &title,
                    reason,
                },
                Next::Done,
            )
        }
        RetryDecision::PauseSender => {
            let reason = serde_json::json!({ "code": code, "title": title, "class": class.as_str(), "at_ms": now_ms }).to_string();
            if let Err(error) = worker
                .queue
                .pause_sender(&sender.phone_number_id, &reason)
                .await
            {
                tracing::warn!(%error, "could not record the pause; pausing locally");
            }
            tracing::warn!(sender = %sender.name, code, "sender paused: {title}");
            (
                Outcome::Retrying {
                    code,
                    title: &title,
                    next_attempt_ms: now_ms,
                },
                Next::Pause,
            )
        }
    };
    let recorded = record(&worker, &sender, &incoming, outcome, &lease).await;
    Completion {
        incoming,
        next: recorded.unwrap_or(next),
    }
}

/// The message kind that needs no open window.
const TEMPLATE_KIND: &str = "template";

/// How soon to try again when the window could not be read.
const WINDOW_READ_RETRY: Duration = Duration::from_secs(1);

/// Why the message must not be sent any more, if it must not.
fn expiry(
    sender: &SenderSettings,
    incoming: &Incoming,
    now_ms: i64,
    age: Duration,
) -> Option<&'static str> {
    if incoming
        .delivery
        .expires_at_ms
        .is_some_and(|expires| now_ms >= expires)
    {
        Some("expires_at")
    } else if age > sender.max_age {
        Some("max_age")
    } else {
        None
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The body for this attempt: the message itself, or once the window was
/// found closed, the caller's fallback template or the sender's default.
/// The body to POST: the message, or as its fallback the message's own
/// template or else the sender's, unless Meta said (webhook or poll) that
/// the sender's is no longer approved; `None` when no fallback is left.
fn body_to_send(worker: &Worker, sender: &SenderSettings, incoming: &Incoming) -> Option<String> {
    let delivery = &incoming.delivery;
    if !incoming.progress.fallback_used {
        return Some(delivery.graph_body());
    }
    delivery.fallback_body().or_else(|| {
        let template = sender.fallback_template.as_ref()?;
        if worker.sender_health.is_unusable(template) {
            return None;
        }
        let recipient = Recipient::from_key(&delivery.recipient)?;
        Some(delivery.with_callback_data(&template.graph_body(&recipient)))
    })
}

fn classify(error: &GraphError) -> ErrorClass {
    match error {
        GraphError::Meta { code, .. } => classify_code(*code),
        GraphError::Http { http_status } => {
            classify_transport(TransportFailure::HttpStatus(*http_status))
        }
        GraphError::Timeout => classify_transport(TransportFailure::Timeout),
        GraphError::Connection(_) => classify_transport(TransportFailure::Connection),
        GraphError::InvalidResponse(_) | GraphError::Config(_) => {
            classify_transport(TransportFailure::InvalidResponse)
        }
    }
}

/// The code and title kept on the message: Meta's own, or for failures
/// before Meta answered, the HTTP status or -1 and what happened.
fn code_and_title(error: &GraphError) -> (i64, String) {
    match error {
        GraphError::Meta { code, message, .. } => (*code, message.clone()),
        GraphError::Http { http_status } => (i64::from(*http_status), error.to_string()),
        other => (-1, other.to_string()),
    }
}

/// Records an outcome, retrying while Redis is away and the lease holds:
/// the entry stays pending until this succeeds. `None` when recorded; else
/// the message is left to the sender's next owner.
async fn record(
    worker: &Worker,
    sender: &SenderSettings,
    incoming: &Incoming,
    outcome: Outcome<'_>,
    lease: &Lease,
) -> Option<Next> {
    let mut pause = Duration::from_millis(50);
    loop {
        match worker
            .queue
            .record(
                &sender.phone_number_id,
                &incoming.delivery,
                incoming.progress,
                outcome,
                unix_ms(),
            )
            .await
        {
            Ok(()) => return None,
            Err(error) => {
                worker
                    .metrics
                    .redis_errors
                    .with_label_values(&["record"])
                    .inc();
                if !lease.is_valid() {
                    tracing::error!(message_id = %incoming.delivery.message_id, %error, "could not record an outcome before the lease ran out; the next owner will pick the message up");
                    return Some(Next::Abandon);
                }
                tracing::warn!(%error, "recording an outcome failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
