//! One sender's hot-path metrics, looked up once: resolving a labelled
//! metric hashes its label values and takes a lock, which a worker would
//! otherwise do several times for every message it sends.

use prometheus::{Histogram, IntCounter};

use crate::Metrics;

/// The series of one sender that change with every message.
#[derive(Clone)]
pub struct SenderMetrics {
    pub sent: IntCounter,
    pub accept_to_send: Histogram,
    pub graph_ok: Histogram,
    pub graph_error: Histogram,
    pub limiter_waits: IntCounter,
    pub pair_deferrals: IntCounter,
    pub parked: IntCounter,
}

impl Metrics {
    /// The hot-path series of the sender named `sender`. Counters and
    /// histograms are never removed, so the handles stay valid.
    pub fn for_sender(&self, sender: &str) -> SenderMetrics {
        SenderMetrics {
            sent: self.sent.with_label_values(&[sender]),
            accept_to_send: self.accept_to_send.with_label_values(&[sender]),
            graph_ok: self
                .graph_request_duration
                .with_label_values(&[sender, "ok"]),
            graph_error: self
                .graph_request_duration
                .with_label_values(&[sender, "error"]),
            limiter_waits: self.limiter_waits.with_label_values(&[sender]),
            pair_deferrals: self.pair_deferrals.with_label_values(&[sender]),
            parked: self.parked.with_label_values(&[sender]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_handle_writes_the_labelled_series() {
        let metrics = Metrics::new();
        let handles = metrics.for_sender("alpha");
        handles.sent.inc();
        handles.graph_error.observe(0.5);
        assert_eq!(metrics.sent.with_label_values(&["alpha"]).get(), 1);
        assert_eq!(
            metrics
                .graph_request_duration
                .with_label_values(&["alpha", "error"])
                .get_sample_count(),
            1
        );
    }
}
