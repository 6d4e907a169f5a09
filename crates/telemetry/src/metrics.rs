//! Every metric family the gateway exports. Label values come from bounded
//! sets: configured sender names, Meta error codes, outcomes.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// Error answers from the Graph API, by code.
    pub graph_errors: IntCounterVec,
    /// Graph API call duration, by outcome (`ok`, `error`).
    pub graph_request_duration: HistogramVec,
    /// From acceptance to Meta's answer.
    pub accept_to_send: HistogramVec,
    /// Entries in each sender's queue not yet done.
    pub queue_depth: IntGaugeVec,
    /// Age of the oldest entry in each sender's queue.
    pub queue_oldest_age: prometheus::GaugeVec,
    /// API answers, by route and status code.
    pub http_responses: IntCounterVec,
    /// Failed Redis operations, by operation.
    pub redis_errors: IntCounterVec,
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

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let family = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(family.clone()))
                .expect("registered once");
            family
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let family = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(family.clone()))
                .expect("registered once");
            family
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
            graph_errors: counter(
                "gateway_graph_errors_total",
                "Error answers from the Graph API, by Meta error code or failure kind.",
                &["sender", "code"],
            ),
            graph_request_duration: histogram(
                "gateway_graph_request_duration_seconds",
                "Duration of Graph API send calls.",
                &["sender", "outcome"],
                LATENCY_BUCKETS,
            ),
            accept_to_send: histogram(
                "gateway_accept_to_send_seconds",
                "Time from acceptance by the api to Meta's answer.",
                &["sender"],
                LATENCY_BUCKETS,
            ),
            queue_depth: {
                let family = IntGaugeVec::new(
                    Opts::new(
                        "gateway_queue_depth",
                        "Messages in a sender's queue, waiting or in flight.",
                    ),
                    &["sender"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(family.clone()))
                    .expect("registered once");
                family
            },
            queue_oldest_age: {
                let family = prometheus::GaugeVec::new(
                    Opts::new(
                        "gateway_queue_oldest_age_seconds",
                        "Age of the oldest message in a sender's queue (0 when empty).",
                    ),
                    &["sender"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(family.clone()))
                    .expect("registered once");
                family
            },
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
            registry,
        };
        Self {
            inner: Arc::new(families),
        }
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
