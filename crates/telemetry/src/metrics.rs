//! Every metric family the gateway exports. Label values come from bounded
//! sets: configured sender names, Meta error codes, error classes, outcomes.

use std::cell::RefCell;
use std::sync::Arc;

use crate::process::ProcessCollector;

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
    /// Messages that left a worker's memory to wait in Redis.
    pub parked: IntCounterVec,
    /// Graph API send calls this worker has open.
    pub calls_in_flight: IntGauge,
    /// The most it may have open (`worker.max_in_flight`).
    pub calls_in_flight_limit: IntGauge,
    /// 1 while a sender is paused.
    pub sender_paused: IntGaugeVec,
    /// The rate a sender is held to after a 130429 lowered it.
    pub effective_rate: IntGaugeVec,
    /// Senders this worker holds a lease for.
    pub senders_owned: IntGauge,
    /// Senders in this worker's configuration: what all workers together should own.
    pub senders_configured: IntGauge,
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
    /// Validly signed webhook POSTs answered 503 and not stored, by reason
    /// (`backlog`: the events stream holds `webhook.max_backlog` entries).
    pub webhooks_refused: IntCounterVec,
    /// Inbound messages that opened or extended a recipient's window.
    pub windows_opened: IntCounterVec,
    /// A sender's quality rating as Meta last reported it: 0 unknown (not
    /// polled yet, or Meta says UNKNOWN), 1 green, 2 yellow, 3 red.
    pub sender_quality_rating: IntGaugeVec,
    /// Messages per second Meta allows a sender's number at its throughput
    /// level (80 standard, 1000 high); 0 when unknown.
    pub sender_throughput_limit: IntGaugeVec,
    /// 1 while a sender's bulk messages are held because Meta rates its
    /// number RED (`worker.hold_bulk_on_red_quality`), else 0; exported by
    /// the sender's owner only.
    pub sender_bulk_held: IntGaugeVec,
    /// Messages Meta bills, counted once per message from the `pricing` of
    /// its status webhooks (its first `delivered` or `read`), by sender and
    /// pricing category (a fixed set, `other` for anything else).
    pub billable_messages: IntCounterVec,
    /// Conversations opened, counted once per conversation id from the
    /// `conversation` object of status webhooks (conversation-based pricing,
    /// webhook versions before v24), by sender and category.
    pub conversations: IntCounterVec,
    /// Messages stored for each client (`/send`, `/send/batch`).
    pub client_accepted: IntCounterVec,
    /// Messages `/send` refused to a client for now, by reason
    /// (`queue_full`, `sender_paused`, `client_rate_limited`,
    /// `client_daily_quota`).
    pub client_refused: IntCounterVec,
    /// Messages of each client that Meta accepted.
    pub client_sent: IntCounterVec,
    /// How long a message queued now would wait for those ahead of it, by
    /// sender and priority (what admission control judges by).
    pub predicted_wait: GaugeVec,
    /// Unique users a business portfolio's numbers started conversations
    /// with in its moving 24 h (as the worker that counted last saw it).
    pub portfolio_users: IntGaugeVec,
    /// The portfolio's messaging limit applied (0: none known).
    pub portfolio_limit: IntGaugeVec,
    /// Messages held back by an account rule, by reason (`messaging_limit`).
    pub held: IntCounterVec,
    /// Read receipts (with or without the typing indicator) by outcome:
    /// `sent`, `failed` (Meta refused it or did not answer), `refused`
    /// (the api's queue for the sender was full).
    pub read_receipts: IntCounterVec,
    /// Media files moved through the api, by sender, `direction` (`upload`:
    /// `POST /media`; `download`: `GET /media/{id}`) and outcome (`ok`,
    /// `unsupported_type`, `too_large`, `not_found`, `failed`: Meta refused
    /// or did not answer, or the transfer broke off).
    pub media: IntCounterVec,
    /// Messages cancelled by their client, by how: `request` (`DELETE
    /// /messages/{id}`, `gateway message cancel`) or `bulk` (`POST
    /// /messages/cancel`).
    pub cancelled: IntCounterVec,
    /// Messages failed without a call because the recipient is suppressed,
    /// by Meta's code (131050, 131049, 131026).
    pub suppressed: IntCounterVec,
    /// 1 while a fallback template a sender uses (its configured one, or a
    /// message's own that Meta refused) is unusable: not APPROVED in the
    /// WABA's registry, or Meta answered 132001, 132015 or 132016; by
    /// sender, template and language. Set by every worker from the
    /// registry: aggregate with `max`.
    pub fallback_template_unusable: IntGaugeVec,
    /// Syncs of a WABA's template registry from Meta, by outcome (`ok`,
    /// `error`).
    pub template_syncs: IntCounterVec,
    /// Messages `/send` refused (422) because of their template, by code
    /// (`template_unknown`, `template_not_approved`, `template_language`,
    /// `template_parameters`).
    pub template_refusals: IntCounterVec,
    /// The name of every family registered above, recorded at registration
    /// (an empty `*Vec` family is absent from `Registry::gather`).
    names: Vec<String>,
    /// Those of them that are histograms (exported as `_bucket`, `_sum`, `_count`).
    histograms: Vec<String>,
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

/// Where families are registered, remembering their names.
struct Registrar {
    registry: Registry,
    names: RefCell<Vec<String>>,
    histograms: RefCell<Vec<String>>,
}

/// Registers one family (or collector of several) and records its names; the
/// names and labels are constants of this crate, so a failure is a
/// programming error caught by the tests below.
fn register<C: Collector + Clone + 'static>(
    registrar: &Registrar,
    family: prometheus::Result<C>,
) -> C {
    let family = family.expect("valid metric definition");
    registrar
        .names
        .borrow_mut()
        .extend(family.desc().iter().map(|d| d.fq_name.clone()));
    registrar
        .registry
        .register(Box::new(family.clone()))
        .expect("metric registered once");
    family
}

impl Metrics {
    pub fn new() -> Self {
        let registrar = Registrar {
            registry: Registry::new(),
            names: RefCell::new(Vec::new()),
            histograms: RefCell::new(Vec::new()),
        };
        let r = &registrar;
        // The standard process_* families: CPU, memory, file descriptors.
        register(r, ProcessCollector::new());
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(r, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(r, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            r.histograms.borrow_mut().push(name.to_owned());
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
            parked: counter(
                "gateway_messages_parked_total",
                "Messages that left a worker's memory to wait in Redis (pair limit, a retry's backoff).",
                &["sender"],
            ),
            calls_in_flight: register(
                r,
                IntGauge::new(
                    "gateway_worker_calls_in_flight",
                    "Graph API send calls this worker has open.",
                ),
            ),
            calls_in_flight_limit: register(
                r,
                IntGauge::new(
                    "gateway_worker_calls_in_flight_limit",
                    "The most Graph API send calls this worker may have open (worker.max_in_flight).",
                ),
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
            senders_configured: register(
                r,
                IntGauge::new(
                    "gateway_worker_senders_configured",
                    "Senders in this worker's configuration (0 on the api).",
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
            webhooks_refused: {
                let refused = counter(
                    "gateway_webhooks_refused_total",
                    "Signed webhook POSTs answered 503 and not stored, by reason (backlog).",
                    &["reason"],
                );
                // The series exists at 0 from the start, so that an alert's
                // increase() sees the first refusal.
                refused.with_label_values(&["backlog"]);
                refused
            },
            windows_opened: counter(
                "gateway_windows_opened_total",
                "Inbound messages that opened or extended a recipient's 24-hour window.",
                &["sender"],
            ),
            sender_quality_rating: gauge(
                "gateway_sender_quality_rating",
                "A sender's quality rating from Meta: 0 unknown, 1 green, 2 yellow, 3 red.",
                &["sender"],
            ),
            sender_throughput_limit: gauge(
                "gateway_sender_throughput_limit",
                "Messages per second Meta allows a sender at its throughput level (0 unknown).",
                &["sender"],
            ),
            sender_bulk_held: gauge(
                "gateway_sender_bulk_held",
                "1 while a sender's bulk messages are held because its quality rating is RED.",
                &["sender"],
            ),
            billable_messages: counter(
                "gateway_billable_messages_total",
                "Messages Meta bills (pricing.billable in their status webhooks), once per message, by category.",
                &["sender", "category"],
            ),
            conversations: counter(
                "gateway_conversations_total",
                "Conversations opened (the conversation object of status webhooks), once per id, by category.",
                &["sender", "category"],
            ),
            client_accepted: counter(
                "gateway_client_messages_accepted_total",
                "Messages stored in Redis for each client.",
                &["client"],
            ),
            client_refused: counter(
                "gateway_client_messages_refused_total",
                "Messages /send refused to a client for now (429/503), by reason.",
                &["client", "reason"],
            ),
            client_sent: counter(
                "gateway_client_messages_sent_total",
                "Messages of each client that the Graph API accepted.",
                &["client"],
            ),
            predicted_wait: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gateway_queue_predicted_wait_seconds",
                        "How long a message queued now would wait for those ahead of it \
                         (queued ahead / the rate the sender keeps now), by priority.",
                    ),
                    &["sender", "priority"],
                ),
            ),
            portfolio_users: gauge(
                "gateway_portfolio_unique_users",
                "Unique users a business portfolio started conversations with in the moving 24 h.",
                &["portfolio"],
            ),
            portfolio_limit: gauge(
                "gateway_portfolio_messaging_limit",
                "The portfolio's messaging limit applied (unique users per 24 h; 0 none known).",
                &["portfolio"],
            ),
            read_receipts: counter(
                "gateway_read_receipts_total",
                "Read receipts (POST /messages/read) by outcome: sent, failed, refused (too many waiting).",
                &["sender", "outcome"],
            ),
            media: counter(
                "gateway_media_total",
                "Media files moved through the api, by sender, direction (upload, download) and outcome (ok, unsupported_type, too_large, not_found, failed).",
                &["sender", "direction", "outcome"],
            ),
            cancelled: counter(
                "gateway_messages_cancelled_total",
                "Messages cancelled before they were sent, by sender and how (request: one by id; bulk: by metadata filter).",
                &["sender", "by"],
            ),
            suppressed: counter(
                "gateway_messages_suppressed_total",
                "Messages failed without a call: the recipient is suppressed (opted out, capped, not on WhatsApp), by code.",
                &["sender", "code"],
            ),
            held: counter(
                "gateway_messages_held_total",
                "Messages held back by an account rule (the portfolio's messaging limit).",
                &["sender", "reason"],
            ),
            fallback_template_unusable: gauge(
                "gateway_fallback_template_unusable",
                "1 while a sender's fallback template is unusable (not APPROVED, or refused by Meta with 132001/132015/132016).",
                &["sender", "template", "language"],
            ),
            template_syncs: counter(
                "gateway_template_syncs_total",
                "Syncs of a WABA's template registry from the Graph API, by outcome.",
                &["waba", "outcome"],
            ),
            template_refusals: counter(
                "gateway_template_refusals_total",
                "Messages /send refused (422) for their template: unknown, not approved, language, parameters.",
                &["sender", "code"],
            ),
            // Last, so that every name above is recorded.
            registry: registrar.registry.clone(),
            names: registrar.names.take(),
            histograms: registrar.histograms.take(),
        };
        Self {
            inner: Arc::new(families),
        }
    }

    /// Counts a failed Redis operation.
    pub fn redis_failed(&self, operation: &str) {
        self.redis_errors.with_label_values(&[operation]).inc();
    }

    /// The name of every family these metrics export, whether or not it has
    /// a sample yet: the gateway's own and the `process_*` families. Families
    /// other crates register later in [`Metrics::registry`] (notifications)
    /// are not included; see `gateway_notify::NotifyMetrics::FAMILY_NAMES`.
    pub fn family_names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The families of [`Metrics::family_names`] that are histograms: each
    /// is exported as `<name>_bucket`, `<name>_sum` and `<name>_count`.
    pub fn histogram_names(&self) -> Vec<String> {
        self.histograms.clone()
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

    #[test]
    fn family_names_list_every_family_even_without_samples() {
        let metrics = Metrics::new();
        let names = metrics.family_names();
        for name in [
            "gateway_messages_accepted_total",
            "gateway_queue_oldest_age_seconds",
            "gateway_worker_senders_owned",
            "gateway_accept_to_delivered_seconds",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        let histograms = metrics.histogram_names();
        assert!(histograms.contains(&"gateway_accept_to_send_seconds".to_owned()));
        assert!(histograms.iter().all(|h| names.contains(h)));
        assert!(!histograms.contains(&"gateway_queue_oldest_age_seconds".to_owned()));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a name listed twice: {names:?}");
        // Nothing gathered that is not listed.
        metrics.accepted.with_label_values(&["support"]).inc();
        metrics.senders_owned.set(1);
        for family in metrics.registry().gather() {
            assert!(
                names.iter().any(|n| n == family.name()),
                "{} is exported but not listed",
                family.name()
            );
        }
    }
}
