//! The per-sender gauges a worker exports: queue depth and oldest age,
//! predicted wait per priority, paused, effective rate, the number's
//! quality rating and whether its bulk lane is held. With the depth, the
//! owner publishes the sender's effective rate in Redis for the api's
//! admission control (`gateway_queue::PUBLISHED_RATE_TTL`). Only the sender's current owner exports them:
//! the gauges are set for a sender once the worker takes its lease, and
//! their label values removed when it hands the sender over or loses it,
//! so that after a handover no stale value (a paused 1, an old depth) keeps
//! an alert firing on the worker that let the sender go.
//!
//! [`OwnedGauges`] is the set of senders whose gauges this worker exports.
//! Every write to a sender's gauges and every removal happen under its lock
//! after checking that set, so a write racing a removal (a depth read that
//! was in flight when the lease was lost) cannot bring a removed series back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gateway_config::SenderSettings;
use gateway_domain::Lane;
use gateway_domain::rules::admission::SenderLoad;
use gateway_queue::QueueDepth;
use gateway_telemetry::Metrics;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Worker;
use crate::unix_ms as now_ms;

const INTERVAL: Duration = Duration::from_secs(5);

/// The `priority` label values of the predicted wait, in stream order.
const PRIORITIES: [&str; 2] = ["transactional", "bulk"];

/// The senders whose gauges a worker exports, by the worker's consumer
/// name: the depth reporter and the ownership loop are started separately
/// and find the same set here.
static BY_WORKER: LazyLock<Mutex<HashMap<String, Arc<OwnedGauges>>>> =
    LazyLock::new(Default::default);

/// The set of senders (by phone_number_id) this worker exports gauges for.
pub(crate) struct OwnedGauges {
    metrics: Metrics,
    owned: Mutex<HashMap<String, Owner>>,
    next_generation: AtomicU64,
    /// A sender was taken: report its depth now rather than at the next tick.
    taken: Notify,
}

struct Owner {
    /// The `sender` label: the sender's configured name.
    name: String,
    /// Which taking of the sender this is: a dispatcher still finishing
    /// after its lease was lost must not write over its successor's rate.
    generation: u64,
    /// Something happened since the last depth report, or the last one
    /// found messages: report it again.
    active: bool,
    /// The rate the sender keeps now.
    rate: u32,
}

/// What a dispatcher updates its sender's gauges through.
pub(crate) struct SenderGauges {
    gauges: Arc<OwnedGauges>,
    phone_number_id: String,
    generation: u64,
}

impl SenderGauges {
    /// The rate the sender keeps now.
    pub fn set_rate(&self, rate: u32) {
        if let Some(owner) = self
            .gauges
            .lock()
            .get_mut(&self.phone_number_id)
            .filter(|o| o.generation == self.generation)
        {
            owner.rate = rate;
        }
        self.with_owner(|metrics, name| {
            metrics
                .effective_rate
                .with_label_values(&[name])
                .set(i64::from(rate));
        });
    }

    /// The number's quality rating (0 unknown .. 3 red) and whether it
    /// holds the bulk lane.
    pub fn set_quality(&self, quality: i64, bulk_held: bool) {
        self.with_owner(|metrics, name| {
            metrics
                .sender_quality_rating
                .with_label_values(&[name])
                .set(quality);
            metrics
                .sender_bulk_held
                .with_label_values(&[name])
                .set(i64::from(bulk_held));
        });
    }

    pub fn set_paused(&self, paused: bool) {
        self.with_owner(|metrics, name| {
            metrics
                .sender_paused
                .with_label_values(&[name])
                .set(i64::from(paused));
        });
    }

    /// The sender's queue may have changed: its depth is reported at the
    /// next round (an idle sender's is not read at all).
    pub fn touch(&self) {
        let mut owned = self.gauges.lock();
        if let Some(owner) = owned
            .get_mut(&self.phone_number_id)
            .filter(|o| o.generation == self.generation)
        {
            owner.active = true;
        }
    }

    /// A dispatcher still finishing after its lease was lost must not
    /// write over its successor's values.
    fn with_owner(&self, write: impl FnOnce(&Metrics, &str)) {
        let owned = self.gauges.lock();
        if let Some(owner) = owned
            .get(&self.phone_number_id)
            .filter(|o| o.generation == self.generation)
        {
            write(&self.gauges.metrics, owner.name.as_str());
        }
    }
}

/// This worker's set (created on first use).
pub(crate) fn owned_gauges(worker: &Worker) -> Arc<OwnedGauges> {
    let mut all = BY_WORKER.lock().unwrap_or_else(PoisonError::into_inner);
    all.entry(worker.consumer.clone())
        .or_insert_with(|| {
            Arc::new(OwnedGauges {
                metrics: worker.metrics.clone(),
                owned: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(0),
                taken: Notify::new(),
            })
        })
        .clone()
}

/// Forgets this worker's set once it has stopped.
pub(crate) fn forget(worker: &Worker) {
    let mut all = BY_WORKER.lock().unwrap_or_else(PoisonError::into_inner);
    all.remove(&worker.consumer);
}

impl OwnedGauges {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Owner>> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The worker took `sender`'s lease: its gauges are this worker's to
    /// export from now on, starting with the configured rate.
    pub fn take(self: &Arc<Self>, sender: &SenderSettings) -> SenderGauges {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut owned = self.lock();
        owned.insert(
            sender.phone_number_id.clone(),
            Owner {
                name: sender.name.clone(),
                generation,
                active: true,
                rate: sender.rate_per_second,
            },
        );
        self.metrics
            .effective_rate
            .with_label_values(&[sender.name.as_str()])
            .set(i64::from(sender.rate_per_second));
        drop(owned);
        self.taken.notify_one();
        SenderGauges {
            gauges: self.clone(),
            phone_number_id: sender.phone_number_id.clone(),
            generation,
        }
    }

    /// The worker let `phone_number_id` go (handed over, lost, stopping):
    /// removes every series of its gauges.
    pub fn release(&self, phone_number_id: &str) {
        let mut owned = self.lock();
        let Some(owner) = owned.remove(phone_number_id) else {
            return;
        };
        let labels = [owner.name.as_str()];
        // An error only says the series was never set.
        let _ = self.metrics.sender_paused.remove_label_values(&labels);
        let _ = self.metrics.effective_rate.remove_label_values(&labels);
        let _ = self
            .metrics
            .sender_quality_rating
            .remove_label_values(&labels);
        let _ = self.metrics.sender_bulk_held.remove_label_values(&labels);
        let _ = self.metrics.queue_depth.remove_label_values(&labels);
        let _ = self.metrics.queue_oldest_age.remove_label_values(&labels);
        for priority in PRIORITIES {
            let _ = self
                .metrics
                .predicted_wait
                .remove_label_values(&[owner.name.as_str(), priority]);
        }
    }

    /// Lets every sender go (the worker stops).
    pub fn release_all(&self) {
        let pnids: Vec<String> = self.lock().keys().cloned().collect();
        for pnid in pnids {
            self.release(&pnid);
        }
    }

    /// Whether this worker owns the sender now.
    pub fn owns(&self, phone_number_id: &str) -> bool {
        self.lock().contains_key(phone_number_id)
    }

    fn set_depth(&self, phone_number_id: &str, depth: &QueueDepth, oldest_age_seconds: f64) {
        let mut owned = self.lock();
        if let Some(owner) = owned.get_mut(phone_number_id) {
            // A sender with messages left is looked at again next round.
            owner.active = depth.length > 0;
            let labels = [owner.name.as_str()];
            self.metrics
                .queue_depth
                .with_label_values(&labels)
                .set(i64::try_from(depth.length).unwrap_or(i64::MAX));
            self.metrics
                .queue_oldest_age
                .with_label_values(&labels)
                .set(oldest_age_seconds);
            let load = SenderLoad {
                transactional: depth.transactional,
                bulk: depth.bulk,
                rate: owner.rate,
            };
            for (lane, priority) in [Lane::Transactional, Lane::Bulk]
                .into_iter()
                .zip(PRIORITIES)
            {
                self.metrics
                    .predicted_wait
                    .with_label_values(&[owner.name.as_str(), priority])
                    .set(load.predicted_wait(lane).as_secs_f64());
            }
        }
    }

    /// The rate the sender keeps now, if this worker owns it.
    fn rate(&self, phone_number_id: &str) -> Option<u32> {
        self.lock().get(phone_number_id).map(|owner| owner.rate)
    }

    /// The owned senders whose depth may have changed since the last report.
    fn active(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, owner)| owner.active)
            .map(|(pnid, _)| pnid.clone())
            .collect()
    }
}

/// Keeps the queue depth and oldest-age gauges of the senders this worker
/// owns current: every few seconds for those with messages or something
/// new (an idle sender costs no Redis call), and at once when it takes a
/// sender.
pub(crate) async fn report_depths(worker: Arc<Worker>, shutdown: CancellationToken) {
    let gauges = owned_gauges(&worker);
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            _ = gauges.taken.notified() => {}
        }
        // A round against an unreachable Redis can take long: never let it
        // hold up a stopping worker.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = report_once(&worker, &gauges) => {}
        }
    }
}

async fn report_once(worker: &Worker, gauges: &OwnedGauges) {
    for pnid in gauges.active() {
        match worker.queue.depth(&pnid).await {
            Ok(depth) => {
                let age = depth
                    .oldest_ms
                    .map_or(0.0, |ms| (now_ms() - ms).max(0) as f64 / 1000.0);
                gauges.set_depth(&pnid, &depth, age);
            }
            Err(_) => worker.metrics.redis_failed("depth"),
        }
        // A sender with messages is reported every round, well within the
        // published rate's expiry; an idle one needs none (nothing waits).
        if let Some(rate) = gauges.rate(&pnid)
            && worker.queue.publish_rate(&pnid, rate).await.is_err()
        {
            worker.metrics.redis_failed("publish_rate");
        }
    }
}
