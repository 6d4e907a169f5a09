//! Every metric family the gateway exports. Label values come from bounded
//! sets: configured sender names, Meta error codes, error classes, outcomes.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Handles to the metric families; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

pub struct Families {
    registry: Registry,
    /// Messages stored by `/send` and `/send/batch`.
    pub accepted: IntCounterVec,
    /// Messages Meta accepted (a wamid was recorded).
    pub sent: IntCounterVec,
    /// Messages that ended as failed, by Meta code (or failure kind).
    pub failed: IntCounterVec,
    /// Messages moved to the dead-letter stream, by code.
    pub dead_letters: IntCounterVec,
    /// Messages that ended as expired (too old to send).
    pub expired: IntCounterVec,
    /// Retries scheduled, by error class.
    pub retries: IntCounterVec,
    /// Messages sent as their fallback template.
    pub fallbacks: IntCounterVec,
    /// Error answers from the Graph API, by code.
    pub graph_errors: IntCounterVec,
    /// Graph API call duration, by outcome (`ok`, `error`).
    pub graph_request_duration: HistogramVec,
    /// From acceptance to Meta's answer.
    pub accept_to_send: HistogramVec,
    /// Times a sender had a message ready but its rate window was full.
    pub limiter_waits: IntCounterVec,
    /// Times a message waited for its recipient's pair limit.
    pub pair_deferrals: IntCounterVec,
    /// 1 while a sender is paused.
    pub sender_paused: IntGaugeVec,
    /// The rate a sender is held to after a 130429 lowered it.
    pub effective_rate: IntGaugeVec,
    /// Senders this worker holds a lease for.
    pub senders_owned: IntGauge,
    /// Leases acquired, released and lost.
    pub lease_changes: IntCounterVec,
    /// Entries in each sender's queue not yet done.
    pub queue_depth: IntGaugeVec,
    /// Age of the oldest entry in each sender's queue.
    pub queue_oldest_age: GaugeVec,
    /// API answers, by route and status code.
    pub http_responses: IntCounterVec,
    /// Failed Redis operations, by operation.
    pub redis_errors: IntCounterVec,
    /// Status events from Meta that moved a message (sent, delivered, read, failed).
    pub statuses: IntCounterVec,
    /// From acceptance to Meta's `delivered`.
    pub accept_to_delivered: HistogramVec,
    /// Webhook events by kind (`status`, `inbound`, `other`, `unknown_sender`, `duplicate`, ...).
    pub webhook_events: IntCounterVec,
    /// Webhook POSTs refused for a missing or wrong signature.
    pub webhook_signature_failures: IntCounterVec,
    /// Inbound messages that opened or extended a recipient's window.
    pub windows_opened: IntCounterVec,
}

impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.inner
    }
}

/// Latency buckets from 5 ms to 5 minutes: a send is fast when the queue is
/// empty and slow when a backlog drains at the sender's rate.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Registers one family; the names and labels are constants of this file,
/// so a failure is a programming error caught by the test below.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    family: prometheus::Result<C>,
) -> C {
    let family = family.expect("valid metric definition");
    registry
        .register(Box::new(family.clone()))
        .expect("metric registered once");
    family
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(r, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(r, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                ),
            )
        };
        let families = Families {
            accepted: counter(
                "gateway_messages_accepted_total",
                "Messages stored in Redis by the api.",
                &["sender"],
            ),
            sent: counter(
                "gateway_messages_sent_total",
                "Messages the Graph API accepted.",
                &["sender"],
            ),
            failed: counter(
                "gateway_messages_failed_total",
                "Messages that ended as failed, by Meta error code.",
                &["sender", "code"],
            ),
            dead_letters: counter(
                "gateway_dead_letters_total",
                "Messages moved to the dead-letter stream, by code.",
                &["sender", "code"],
            ),
            expired: counter(
                "gateway_messages_expired_total",
                "Messages that expired before they could be sent.",
                &["sender"],
            ),
            retries: counter(
                "gateway_retries_total",
                "Retries scheduled, by error class.",
                &["sender", "reason"],
            ),
            fallbacks: counter(
                "gateway_template_fallbacks_total",
                "Messages sent as their fallback template.",
                &["sender"],
            ),
            graph_errors: counter(
                "gateway_graph_errors_total",
                "Error answers from the Graph API, by Meta error code (or -1 / HTTP status without one).",
                &["sender", "code"],
            ),
            graph_request_duration: histogram(
                "gateway_graph_request_duration_seconds",
                "Duration of Graph API send calls.",
                &["sender", "outcome"],
            ),
            accept_to_send: histogram(
                "gateway_accept_to_send_seconds",
                "Time from acceptance by the api to Meta's answer.",
                &["sender"],
            ),
            limiter_waits: counter(
                "gateway_limiter_waits_total",
                "Times a sender's rate window was full while messages were ready.",
                &["sender"],
            ),
            pair_deferrals: counter(
                "gateway_pair_limit_deferrals_total",
                "Times a message waited for its recipient's pair limit.",
                &["sender"],
            ),
            sender_paused: gauge(
                "gateway_sender_paused",
                "1 while a sender is paused.",
                &["sender"],
            ),
            effective_rate: gauge(
                "gateway_sender_effective_rate",
                "Messages per second a sender is held to after a 130429.",
                &["sender"],
            ),
            senders_owned: register(
                r,
                IntGauge::new(
                    "gateway_worker_senders_owned",
                    "Senders this worker holds a lease for.",
                ),
            ),
            lease_changes: counter(
                "gateway_lease_changes_total",
                "Sender leases acquired, released and lost by this worker.",
                &["change"],
            ),
            queue_depth: gauge(
                "gateway_queue_depth",
                "Messages in a sender's queue, waiting or in flight.",
                &["sender"],
            ),
            queue_oldest_age: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gateway_queue_oldest_age_seconds",
                        "Age of the oldest message in a sender's queue (0 when empty).",
                    ),
                    &["sender"],
                ),
            ),
            http_responses: counter(
                "gateway_http_responses_total",
                "API answers by route and HTTP status.",
                &["route", "status"],
            ),
            redis_errors: counter(
                "gateway_redis_errors_total",
                "Redis operations that failed.",
                &["operation"],
            ),
            statuses: counter(
                "gateway_message_statuses_total",
                "Status events from Meta that moved a message forward, by status.",
                &["sender", "status"],
            ),
            accept_to_delivered: histogram(
                "gateway_accept_to_delivered_seconds",
                "Time from acceptance by the api to Meta's delivered status.",
                &["sender"],
            ),
            webhook_events: counter(
                "gateway_webhook_events_total",
                "Events received on Meta's webhook, by kind.",
                &["kind"],
            ),
            webhook_signature_failures: counter(
                "gateway_webhook_signature_failures_total",
                "Webhook POSTs refused for their signature, by reason (missing, invalid).",
                &["reason"],
            ),
            windows_opened: counter(
                "gateway_windows_opened_total",
                "Inbound messages that opened or extended a recipient's 24-hour window.",
                &["sender"],
            ),
            registry,
        };
        Self {
            inner: Arc::new(families),
        }
    }

    /// The registry, for families other crates define (notifications).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_labels() {
        let metrics = Metrics::new();
        metrics.accepted.with_label_values(&["support"]).inc();
        metrics
            .failed
            .with_label_values(&["support", "131026"])
            .inc();
        let text = metrics.render();
        assert!(
            text.contains("gateway_messages_accepted_total{sender=\"support\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_messages_failed_total{code=\"131026\",sender=\"support\"} 1"),
            "{text}"
        );
    }
}
