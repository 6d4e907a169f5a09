//! Counters of what the sandbox did, for tests and the demo to assert on:
//! accepted sends, rejections and failed statuses by Meta error code, and
//! webhook delivery outcomes. Plain atomics on the send path; the per-code
//! maps take a short lock only when something is rejected.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::locks::lock;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxStats {
    /// Sends answered with HTTP 200.
    pub accepted: u64,
    /// Simulated user messages.
    pub inbound: u64,
    /// Read receipts (with or without typing) answered with success.
    pub read_receipts: u64,
    /// Media files uploaded and stored (`POST /{version}/{number}/media`).
    pub media_uploads: u64,
    /// Media files downloaded through their short-lived URL.
    pub media_downloads: u64,
    /// Sends answered with an error, by Meta error code.
    pub rejections: BTreeMap<i64, u64>,
    /// Accepted sends that ended in a `failed` status, by Meta error code.
    pub failed_statuses: BTreeMap<i64, u64>,
    /// Connections closed without an answer by fault injection.
    pub connections_dropped: u64,
    /// Webhook POSTs answered with 200.
    pub webhooks_delivered: u64,
    /// Webhook POST attempts that got anything but a 200 (each retry counts).
    pub webhook_failed_attempts: u64,
    /// Webhook POSTs given up after their last attempt.
    pub webhooks_abandoned: u64,
    /// Webhook events discarded because too many were waiting.
    pub webhooks_discarded: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    inbound: AtomicU64,
    read_receipts: AtomicU64,
    media_uploads: AtomicU64,
    media_downloads: AtomicU64,
    rejections: Mutex<BTreeMap<i64, u64>>,
    failed_statuses: Mutex<BTreeMap<i64, u64>>,
    connections_dropped: AtomicU64,
    webhooks_delivered: AtomicU64,
    webhook_failed_attempts: AtomicU64,
    webhooks_abandoned: AtomicU64,
    webhooks_discarded: AtomicU64,
}

/// The events a counter exists for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Accepted,
    Inbound,
    ReadReceipt,
    MediaUploaded,
    MediaDownloaded,
    Rejected(i64),
    FailedStatus(i64),
    ConnectionDropped,
    WebhookDelivered,
    WebhookAttemptFailed,
    WebhookAbandoned,
    WebhookDiscarded,
}

impl Counters {
    pub(crate) fn count(&self, event: Event) {
        let counter = match event {
            Event::Accepted => &self.accepted,
            Event::Inbound => &self.inbound,
            Event::ReadReceipt => &self.read_receipts,
            Event::MediaUploaded => &self.media_uploads,
            Event::MediaDownloaded => &self.media_downloads,
            Event::Rejected(code) => return *lock(&self.rejections).entry(code).or_default() += 1,
            Event::FailedStatus(code) => {
                return *lock(&self.failed_statuses).entry(code).or_default() += 1;
            }
            Event::ConnectionDropped => &self.connections_dropped,
            Event::WebhookDelivered => &self.webhooks_delivered,
            Event::WebhookAttemptFailed => &self.webhook_failed_attempts,
            Event::WebhookAbandoned => &self.webhooks_abandoned,
            Event::WebhookDiscarded => &self.webhooks_discarded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SandboxStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SandboxStats {
            accepted: get(&self.accepted),
            inbound: get(&self.inbound),
            read_receipts: get(&self.read_receipts),
            media_uploads: get(&self.media_uploads),
            media_downloads: get(&self.media_downloads),
            rejections: lock(&self.rejections).clone(),
            failed_statuses: lock(&self.failed_statuses).clone(),
            connections_dropped: get(&self.connections_dropped),
            webhooks_delivered: get(&self.webhooks_delivered),
            webhook_failed_attempts: get(&self.webhook_failed_attempts),
            webhooks_abandoned: get(&self.webhooks_abandoned),
            webhooks_discarded: get(&self.webhooks_discarded),
        }
    }

    pub(crate) fn reset(&self) {
        for counter in [
            &self.accepted,
            &self.inbound,
            &self.read_receipts,
            &self.media_uploads,
            &self.media_downloads,
            &self.connections_dropped,
            &self.webhooks_delivered,
            &self.webhook_failed_attempts,
            &self.webhooks_abandoned,
            &self.webhooks_discarded,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        lock(&self.rejections).clear();
        lock(&self.failed_statuses).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_event_and_code_and_resets() {
        let counters = Counters::default();
        counters.count(Event::Accepted);
        counters.count(Event::Accepted);
        counters.count(Event::Rejected(130_429));
        counters.count(Event::Rejected(130_429));
        counters.count(Event::Rejected(100));
        counters.count(Event::FailedStatus(131_026));
        counters.count(Event::WebhookAttemptFailed);
        let stats = counters.snapshot();
        assert_eq!(stats.accepted, 2);
        assert_eq!(stats.rejections, BTreeMap::from([(100, 1), (130_429, 2)]));
        assert_eq!(stats.failed_statuses, BTreeMap::from([(131_026, 1)]));
        assert_eq!(stats.webhook_failed_attempts, 1);
        counters.reset();
        assert_eq!(counters.snapshot(), SandboxStats::default());
    }

    #[test]
    fn json_round_trip_keeps_integer_codes() {
        let stats = SandboxStats {
            rejections: BTreeMap::from([(131_056, 3)]),
            ..SandboxStats::default()
        };
        let json = serde_json::to_string(&stats).expect("serializes");
        assert!(json.contains("\"131056\":3"), "{json}");
        assert_eq!(
            serde_json::from_str::<SandboxStats>(&json).expect("deserializes"),
            stats
        );
    }
}
