//! The notification metric families. Their label, `target`, is the
//! signer name (`subscriber:<name>`, `client:<name>`, bounded by
//! configuration; `unknown` for a name not configured), never a URL; the
//! dropped notifications are labelled by `reason` instead (`backlog`), and
//! so are the refused ones (`private_address`, `not_https`, `userinfo`).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::transport::REFUSED_REASONS;

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
    /// Notifications not stored, by reason: [`DROPPED_FOR_BACKLOG`] when
    /// `notify.max_backlog` were waiting already.
    pub(crate) dropped: IntCounterVec,
    /// Callbacks not sent because of where they lead, by reason (see
    /// `transport::REFUSED_REASONS`); each is also a dead letter.
    pub(crate) refused: IntCounterVec,
}

/// The `reason` of a notification dropped because the backlog was full.
pub(crate) const DROPPED_FOR_BACKLOG: &str = "backlog";

impl NotifyMetrics {
    /// The name of every family [`NotifyMetrics::register`] registers, in
    /// that order, whether or not it has a sample yet (an empty `*Vec`
    /// family is absent from `Registry::gather`).
    pub const FAMILY_NAMES: &'static [&'static str] = &[
        "gateway_notifications_delivered_total",
        "gateway_notification_attempts_failed_total",
        "gateway_notification_dead_letters_total",
        "gateway_notification_delivery_duration_seconds",
        "gateway_notifications_pending",
        "gateway_notifications_dropped_total",
        "gateway_notifications_refused_total",
    ];

    /// The families of [`NotifyMetrics::FAMILY_NAMES`] that are histograms
    /// (exported as `<name>_bucket`, `<name>_sum` and `<name>_count`).
    pub const HISTOGRAM_NAMES: &'static [&'static str] =
        &["gateway_notification_delivery_duration_seconds"];

    /// Creates the families and registers them; fails if `registry` already
    /// has them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let [
            delivered_name,
            attempts_failed_name,
            dead_letters_name,
            delivery_duration_name,
            pending_name,
            dropped_name,
            refused_name,
        ] = Self::FAMILY_NAMES
        else {
            unreachable!("seven notification families")
        };
        let delivered = IntCounterVec::new(
            Opts::new(
                *delivered_name,
                "Notifications delivered (answered with a 2xx).",
            ),
            &["target"],
        )?;
        let attempts_failed = IntCounterVec::new(
            Opts::new(
                *attempts_failed_name,
                "Notification delivery attempts that failed (non-2xx, timeout, connection error).",
            ),
            &["target"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                *dead_letters_name,
                "Notifications given up on and moved to the dead stream.",
            ),
            &["target"],
        )?;
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                *delivery_duration_name,
                "Duration of each notification POST, whatever its outcome.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["target"],
        )?;
        let pending = IntGauge::new(
            *pending_name,
            "Notifications waiting for delivery or a retry (outbox stream and retry set).",
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                *dropped_name,
                "Notifications not stored, by reason (backlog: notify.max_backlog were waiting).",
            ),
            &["reason"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                *refused_name,
                "Callbacks not sent because of where they lead, by reason (private_address: \
                 loopback, private, link-local or metadata, also once resolved; not_https; \
                 userinfo); each is also a dead letter.",
            ),
            &["reason"],
        )?;
        // At 0 from the start, so that an alert's increase() sees the first one.
        dropped.with_label_values(&[DROPPED_FOR_BACKLOG]);
        for reason in REFUSED_REASONS {
            refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(delivered.clone()))?;
        registry.register(Box::new(attempts_failed.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(delivery_duration.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self {
            delivered,
            attempts_failed,
            dead_letters,
            delivery_duration,
            pending,
            dropped,
            refused,
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

    #[test]
    fn family_names_match_what_is_registered() {
        use prometheus::core::Collector;
        let metrics = NotifyMetrics::register(&Registry::new()).expect("registration");
        let collectors: [&dyn Collector; 7] = [
            &metrics.delivered,
            &metrics.attempts_failed,
            &metrics.dead_letters,
            &metrics.delivery_duration,
            &metrics.pending,
            &metrics.dropped,
            &metrics.refused,
        ];
        let names: Vec<&str> = collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.as_str())
            .collect();
        assert_eq!(names, NotifyMetrics::FAMILY_NAMES);
        assert_eq!(
            metrics.delivery_duration.desc()[0].fq_name,
            NotifyMetrics::HISTOGRAM_NAMES[0]
        );
        assert_eq!(NotifyMetrics::HISTOGRAM_NAMES.len(), 1);
    }
}
