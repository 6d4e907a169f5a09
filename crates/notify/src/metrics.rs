//! The notification metric families. The only label, `target`, is the
//! signer name (`subscriber:<name>`, `client:<name>`, bounded by
//! configuration; `unknown` for a name not configured), never a URL.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Handles to the metric families; cheap to clone.
#[derive(Clone, Debug)]
pub struct NotifyMetrics {
    /// Deliveries answered with a 2xx.
    pub(crate) delivered: IntCounterVec,
    /// Attempts that failed (non-2xx, timeout, connection error).
    pub(crate) attempts_failed: IntCounterVec,
    /// Notifications given up on.
    pub(crate) dead_letters: IntCounterVec,
    /// Duration of each POST, whatever its outcome.
    pub(crate) delivery_duration: HistogramVec,
    /// Notifications in the outbox stream and the retry set together, as the
    /// delivery loop last saw them (every worker reports the same total).
    pub(crate) pending: IntGauge,
}

impl NotifyMetrics {
    /// Creates the families and registers them; fails if `registry` already
    /// has them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let delivered = IntCounterVec::new(
            Opts::new(
                "gateway_notifications_delivered_total",
                "Notifications delivered (answered with a 2xx).",
            ),
            &["target"],
        )?;
        let attempts_failed = IntCounterVec::new(
            Opts::new(
                "gateway_notification_attempts_failed_total",
                "Notification delivery attempts that failed (non-2xx, timeout, connection error).",
            ),
            &["target"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "gateway_notification_dead_letters_total",
                "Notifications given up on and moved to the dead stream.",
            ),
            &["target"],
        )?;
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_notification_delivery_duration_seconds",
                "Duration of each notification POST, whatever its outcome.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["target"],
        )?;
        let pending = IntGauge::new(
            "gateway_notifications_pending",
            "Notifications waiting for delivery or a retry (outbox stream and retry set).",
        )?;
        registry.register(Box::new(delivered.clone()))?;
        registry.register(Box::new(attempts_failed.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(delivery_duration.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(Self {
            delivered,
            attempts_failed,
            dead_letters,
            delivery_duration,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let registry = Registry::new();
        let metrics = NotifyMetrics::register(&registry).expect("first registration");
        metrics
            .delivered
            .with_label_values(&["subscriber:crm"])
            .inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(names.contains(&"gateway_notifications_delivered_total".to_owned()));
        assert!(NotifyMetrics::register(&registry).is_err());
    }
}
