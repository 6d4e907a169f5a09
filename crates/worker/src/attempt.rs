//! One attempt at sending one message: the claim on it (a message a client
//! cancelled is dropped here, and one claimed can no longer be cancelled;
//! see the queue's `cancel` module), the window check (a free-form
//! message to a recipient whose window is closed, or closes within the
//! margin, goes as its fallback template), the Graph API call, what Meta's
//! answer means (the domain's error classes and [`RetryPolicy::judge`]),
//! and the record of it in Redis. The dispatcher is told what came of it.
//!
//! [`RetryPolicy::judge`]: gateway_domain::rules::RetryPolicy::judge

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::MessageKind;
use gateway_domain::rules::{
    ErrorClass, Failure, TransportFailure, Verdict, classify_code, classify_transport, window,
};
use gateway_domain::templates::TemplateCategory;
use gateway_graph::GraphError;
use gateway_queue::{Outcome, SendClaim};
use gateway_telemetry::SenderMetrics;
use tokio::sync::mpsc::UnboundedSender;

use crate::lease::Lease;
use crate::messaging_limit;
use crate::sender_state::{Call, Completion, HeldMessage, Next};
use crate::suppressions;
use crate::templates;
use crate::{Worker, unix_ms};

/// A send's place in its sender's send window, taken when the dispatcher
/// let it go. The call says when it really leaves: the window read before
/// it is a Redis round trip, and a new connection to Meta a handshake; a
/// call held up by either would otherwise reach Meta in the same second
/// as the sends after it.
pub(crate) struct Slot {
    pub taken_at: Instant,
    pub departures: UnboundedSender<(Instant, Instant)>,
    /// The fastest recent answer from Meta (see [`Departure::answered`]).
    pub fastest_answer: Duration,
}

impl Slot {
    /// The call leaves at `now`.
    fn leaving(self, now: Instant) -> Arc<Departure> {
        let recorded = report_departure(&self.departures, self.taken_at, now);
        Arc::new(Departure {
            recorded: Mutex::new(recorded),
            departures: self.departures,
            fastest_answer: self.fastest_answer,
        })
    }
}

/// Where a call's send stands in the window, moved on as the call learns
/// that it reached Meta later than thought.
struct Departure {
    recorded: Mutex<Instant>,
    departures: UnboundedSender<(Instant, Instant)>,
    fastest_answer: Duration,
}

impl Departure {
    /// The call leaves only at `now` (its new connection is open).
    fn left(&self, now: Instant) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        *recorded = report_departure(&self.departures, *recorded, now);
    }

    /// Meta answered at `now`. Whatever the answer took beyond the fastest recent
    /// one may have been spent before the request reached Meta (a busy
    /// machine on either side, the network), so the send counts from that
    /// much later: the sends after it then keep their distance from its
    /// latest possible arrival, not from when it left.
    fn answered(&self, now: Instant) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        let took = now.saturating_duration_since(*recorded);
        let held_up = took.saturating_sub(self.fastest_answer);
        *recorded = report_departure(&self.departures, *recorded, *recorded + held_up);
    }
}

/// Tells the dispatcher that the send recorded at `recorded` counts from
/// `at`, if that is noticeably later; the time the window holds for it from
/// now on.
fn report_departure(
    departures: &UnboundedSender<(Instant, Instant)>,
    recorded: Instant,
    at: Instant,
) -> Instant {
    if at.saturating_duration_since(recorded) < Duration::from_millis(1) {
        return recorded;
    }
    // The dispatcher may be gone (the sender was let go): nothing to keep.
    let _ = departures.send((recorded, at));
    at
}

pub(crate) async fn attempt(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    sender_metrics: Arc<SenderMetrics>,
    mut incoming: HeldMessage,
    lease: Lease,
    slot: Slot,
) -> Completion {
    let delivery = &incoming.delivery;
    // A free-form body depends on the recipient's window: the claim reads
    // it in the same round trip.
    let free_form = !incoming.progress.fallback_used && delivery.kind != MessageKind::Template;
    let window_opened = match worker
        .queue
        .claim_send(
            &sender.phone_number_id,
            delivery,
            claim_ttl(&worker),
            free_form,
        )
        .await
    {
        Ok(SendClaim::Claimed { window_opened_ms }) => window_opened_ms,
        Ok(SendClaim::Cancelled) => {
            tracing::debug!(message_id = %delivery.message_id, "cancelled by its client; dropped");
            return Completion::without_call(incoming, Next::Done);
        }
        Err(error) => {
            // Without knowing the window, neither body is safe to send.
            // Redis may have run the claim and lost only the answer.
            tracing::warn!(%error, "could not claim the message; retrying");
            worker.metrics.redis_failed("claim");
            return give_back(&worker, &sender, incoming, retry_soon()).await;
        }
    };
    let now_ms = unix_ms();
    let age = Duration::from_millis(u64::try_from(now_ms - delivery.due_ms()).unwrap_or(0));
    if free_form
        && !window::allows_free_form(
            window_opened,
            now_ms,
            millis(worker.settings.worker.window_margin),
        )
    {
        incoming.progress.fallback_used = true;
    }
    let (body, sent_as) = match body_to_send(&worker, &sender, &incoming).await {
        Ok(to_send) => to_send,
        Err(missing) => {
            let (code, title, reason) = match missing {
                NoFallback::None => (
                    131047,
                    "no fallback template for a closed window".to_owned(),
                    "window_closed",
                ),
                NoFallback::Unusable { code } => {
                    for family in [&worker.metrics.failed, &worker.metrics.dead_letters] {
                        family
                            .with_label_values(&[sender.name.as_str(), &code.to_string()])
                            .inc();
                    }
                    let title = format!(
                        "the window is closed and no fallback template is usable (Meta answers {code})"
                    );
                    (code, title, templates::NO_USABLE_FALLBACK)
                }
            };
            let outcome = Outcome::Failed {
                code,
                title: &title,
                reason,
            };
            let next = record(&worker, &sender, &incoming, outcome).await;
            return Completion::without_call(incoming, next.unwrap_or(Next::Done));
        }
    };
    match suppressions::holding_back(
        &worker,
        &sender,
        &incoming,
        goes_as_marketing(&worker, &sender, &incoming, sent_as).await,
        now_ms,
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(suppression)) => {
            worker
                .metrics
                .suppressed
                .with_label_values(&[sender.name.as_str(), &suppression.code.to_string()])
                .inc();
            let title = format!(
                "suppressed: {} ({} since {})",
                suppression.scope, suppression.source, suppression.at_ms
            );
            let outcome = Outcome::Failed {
                code: suppression.code,
                title: &title,
                reason: SUPPRESSED,
            };
            let next = record(&worker, &sender, &incoming, outcome).await;
            return Completion::without_call(incoming, next.unwrap_or(Next::Done));
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the recipient's suppressions; retrying");
            worker.metrics.redis_failed("suppressions");
            return give_back(&worker, &sender, incoming, retry_soon()).await;
        }
    }
    match messaging_limit::hold_until(&worker, &sender, &incoming, now_ms).await {
        Ok(None) => {}
        Ok(Some(until_ms)) => {
            let outcome = Outcome::Held {
                reason: messaging_limit::HELD_REASON,
                until_ms,
            };
            let next = record(&worker, &sender, &incoming, outcome).await;
            let wait = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
            return Completion::without_call(
                incoming,
                next.unwrap_or(retry_at(Instant::now() + wait)),
            );
        }
        Err(error) => {
            tracing::warn!(%error, "could not count the conversation against the messaging limit; retrying");
            worker.metrics.redis_failed("messaging_limit");
            return give_back(&worker, &sender, incoming, retry_soon()).await;
        }
    }
    let Some(endpoint) = worker.endpoints.get(&sender.phone_number_id) else {
        tracing::error!(sender = %sender.name, "no usable access token; pausing the sender");
        return give_back(&worker, &sender, incoming, Next::Pause).await;
    };
    // The window read may have taken long: the call starts only if the
    // lease still outlasts it (else another worker could take the sender
    // and send the message again while this call runs).
    if !lease.covers(worker.settings.worker.longest_call) {
        return give_back(&worker, &sender, incoming, retry_at(Instant::now())).await;
    }

    let started = Instant::now();
    let departure = slot.leaving(started);
    let connected = {
        let departure = departure.clone();
        move || departure.left(Instant::now())
    };
    let result =
        gateway_graph::on_connected(connected, worker.graph.send_message(endpoint, body)).await;
    incoming.progress.attempts += 1;
    let took = started.elapsed();
    match result {
        Ok(_) => sender_metrics.graph_ok.observe(took.as_secs_f64()),
        Err(_) => sender_metrics.graph_error.observe(took.as_secs_f64()),
    }
    // Meta answered (an error in its shape or an HTTP status), as opposed
    // to a timeout or a dropped connection.
    let call = match &result {
        Ok(_) | Err(GraphError::Meta { .. } | GraphError::Http { .. }) => Call::Answered(took),
        Err(_) => Call::Unanswered,
    };
    if let Call::Answered(_) = call {
        departure.answered(Instant::now());
    }

    let error = match result {
        Ok(accepted) => {
            sender_metrics.sent.inc();
            worker.count_sent_for(&incoming.delivery.client);
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
            )
            .await;
            return Completion {
                message: incoming,
                next: next.unwrap_or(Next::Done),
                call,
            };
        }
        Err(error) => error,
    };

    let class = classify(&error);
    let (code, title) = code_and_title(&error);
    if matches!(
        code,
        gateway_domain::templates::TEMPLATE_MISSING
            | gateway_domain::templates::TEMPLATE_PAUSED
            | gateway_domain::templates::TEMPLATE_DISABLED
    ) && let Some((template, fallback)) = sent_template(&sender, &incoming, sent_as)
    {
        templates::refused_by_meta(&worker, &sender, &template, code, fallback).await;
    }
    if let Err(error) = suppressions::record_failure(
        &worker,
        &sender,
        incoming.delivery.recipient.key(),
        code,
        now_ms,
    )
    .await
    {
        tracing::warn!(%error, "could not record the suppression");
    }
    if class == ErrorClass::WindowClosed {
        // Meta knows better than our records: no free-form until the user writes again.
        let recipient = incoming.delivery.recipient.key();
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
    let expires_in = incoming
        .delivery
        .expires_at_ms
        .map(|expires| Duration::from_millis(u64::try_from(expires - now_ms).unwrap_or(0)));
    let verdict = worker.retry_policy.judge(&Failure {
        class,
        attempts: incoming.progress.attempts,
        age,
        fallback_available,
        expires_in,
        reported_later: false,
    });
    tracing::info!(message_id = %incoming.delivery.message_id, sender = %sender.name, %error, class = class.as_str(), ?verdict, "send failed");
    let now = Instant::now();
    let (outcome, next) = match verdict {
        Verdict::Expire => {
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
        Verdict::Retry {
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
        Verdict::Fallback => {
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
                retry_at(now),
            )
        }
        Verdict::Fail { reason } => {
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
        Verdict::PauseSender => {
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
    let recorded = record(&worker, &sender, &incoming, outcome).await;
    Completion {
        message: incoming,
        next: recorded.unwrap_or(next),
        call,
    }
}

/// How soon to try again when a Redis read before the call failed.
const READ_FAILED_RETRY: Duration = Duration::from_secs(1);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// A Redis read the send needs failed: the message is tried again soon.
fn retry_soon() -> Next {
    retry_at(Instant::now() + READ_FAILED_RETRY)
}

fn retry_at(at: Instant) -> Next {
    Next::Retry {
        at,
        sender_wait: false,
        throttled: false,
    }
}

/// The record's reason for a message a suppression held back.
const SUPPRESSED: &str = "suppressed";

/// Whether the message goes as a marketing template: by the category the
/// api stored from the template registry with the message (or its own
/// fallback), or the registry's for the sender's configured fallback.
async fn goes_as_marketing(
    worker: &Worker,
    sender: &SenderSettings,
    message: &HeldMessage,
    sent_as: SentAs,
) -> bool {
    let delivery = &message.delivery;
    let marketing =
        |category: Option<TemplateCategory>| category.is_some_and(TemplateCategory::is_marketing);
    match sent_as {
        SentAs::Message => {
            delivery.kind == MessageKind::Template && marketing(delivery.template_category)
        }
        SentAs::OwnFallback => marketing(delivery.fallback_category),
        SentAs::SenderFallback => {
            let Some(template) = &sender.fallback_template else {
                return false;
            };
            templates::category(worker, sender, &templates::template_value(template))
                .await
                .is_some_and(TemplateCategory::is_marketing)
        }
    }
}

/// What a send went as: the message itself, its own fallback template, or
/// the sender's configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentAs {
    Message,
    OwnFallback,
    SenderFallback,
}

/// Why a message to a closed window has no body to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoFallback {
    /// Neither the message nor the sender has a fallback template.
    None,
    /// Each one there is cannot be sent: Meta would answer `code` (the
    /// first one's).
    Unusable { code: i64 },
}

/// The body to POST: the message, or as its fallback the message's own
/// template or else the sender's, whichever is usable (not marked
/// unusable by this worker after Meta refused it or a webhook, and not
/// refused by the WABA's template registry: see `templates::usable`).
async fn body_to_send(
    worker: &Worker,
    sender: &SenderSettings,
    incoming: &HeldMessage,
) -> Result<(String, SentAs), NoFallback> {
    let delivery = &incoming.delivery;
    if !incoming.progress.fallback_used {
        return Ok((delivery.graph_body(), SentAs::Message));
    }
    let mut refused = None;
    if let Some(own) = delivery.fallback_body() {
        match templates::usable(worker, sender, &templates::template_of_body(&own)).await {
            Ok(()) => return Ok((own, SentAs::OwnFallback)),
            Err(code) => refused = Some(code),
        }
    }
    if let Some(template) = &sender.fallback_template {
        match templates::usable(worker, sender, &templates::template_value(template)).await {
            Ok(()) => {
                let body = delivery.with_callback_data(&template.graph_body(&delivery.recipient));
                return Ok((body, SentAs::SenderFallback));
            }
            Err(code) => refused = refused.or(Some(code)),
        }
    }
    Err(refused.map_or(NoFallback::None, |code| NoFallback::Unusable { code }))
}

/// The template object a send went as (and whether as a fallback), to
/// mark it when Meta refuses it; `None` for a free-form message.
fn sent_template(
    sender: &SenderSettings,
    incoming: &HeldMessage,
    sent_as: SentAs,
) -> Option<(serde_json::Value, bool)> {
    let delivery = &incoming.delivery;
    match sent_as {
        SentAs::Message => (delivery.kind == MessageKind::Template)
            .then(|| (templates::template_of_body(&delivery.graph_body()), false)),
        SentAs::OwnFallback => Some((
            templates::template_of_body(&delivery.fallback_body()?),
            true,
        )),
        SentAs::SenderFallback => Some((
            templates::template_value(sender.fallback_template.as_ref()?),
            true,
        )),
    }
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

/// How long an outcome is tried to be recorded while Redis is away. What
/// Meta accepted is recorded even after the lease lapsed (the record is
/// idempotent, and one finished by another worker meanwhile is left as it
/// is): giving up sooner would send it again.
const RECORD_PATIENCE: Duration = Duration::from_secs(300);

/// Ends an attempt before its call with no outcome to record (a Redis
/// read failed, the sender pauses, the lease runs short): the claim is
/// given back, so that until the next attempt the message may be
/// cancelled. If that fails too, the claim lapses after [`claim_ttl`].
async fn give_back(
    worker: &Worker,
    sender: &SenderSettings,
    message: HeldMessage,
    next: Next,
) -> Completion {
    if let Err(error) = worker
        .queue
        .release_claim(&sender.phone_number_id, &message.delivery.message_id)
        .await
    {
        tracing::warn!(%error, "could not give a claim back; it lapses on its own");
        worker.metrics.redis_failed("claim");
    }
    Completion::without_call(message, next)
}

/// How long a claim keeps a cancel away if its worker dies before the
/// outcome is recorded: the call, then the recording's patience.
fn claim_ttl(worker: &Worker) -> Duration {
    worker.settings.graph.timeout + RECORD_PATIENCE
}

/// Records an outcome, retrying while Redis is away: the entry stays
/// pending until this succeeds. `None` when recorded (or when another
/// worker had finished the message already, after this one lost the
/// sender); `Abandon` after [`RECORD_PATIENCE`]: the message is left
/// pending, to be taken again.
pub(crate) async fn record(
    worker: &Worker,
    sender: &SenderSettings,
    incoming: &HeldMessage,
    outcome: Outcome<'_>,
) -> Option<Next> {
    let mut pause = Duration::from_millis(50);
    let give_up = Instant::now() + RECORD_PATIENCE;
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
            Ok(recorded) => {
                if !recorded {
                    tracing::info!(message_id = %incoming.delivery.message_id, "another worker finished the message meanwhile; its record stands");
                }
                return None;
            }
            Err(error) => {
                worker.metrics.redis_failed("record");
                if Instant::now() >= give_up {
                    tracing::error!(message_id = %incoming.delivery.message_id, %error, "could not record an outcome; the message stays pending and will be taken again");
                    return Some(Next::Abandon);
                }
                tracing::warn!(%error, "recording an outcome failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_send_counts_from_its_latest_possible_arrival_at_meta() {
        let (departures, mut reported) = tokio::sync::mpsc::unbounded_channel();
        let taken_at = Instant::now();
        let slot = Slot {
            taken_at,
            departures,
            fastest_answer: 5 * MS,
        };

        // Left at once, answered as fast as ever: it stays where it was.
        let departure = slot.leaving(taken_at);
        departure.answered(taken_at + 5 * MS);
        assert!(reported.try_recv().is_err());

        // Its connection opened 20 ms later, and the answer took 45 ms more
        // than the fastest: 40 ms of that may have come before Meta.
        departure.left(taken_at + 20 * MS);
        assert_eq!(
            reported.try_recv().ok(),
            Some((taken_at, taken_at + 20 * MS))
        );
        departure.answered(taken_at + 65 * MS);
        assert_eq!(
            reported.try_recv().ok(),
            Some((taken_at + 20 * MS, taken_at + 60 * MS))
        );
    }
}
