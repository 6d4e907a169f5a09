//! Which senders this worker drains. Every `worker.lease_renew_ms` the
//! worker renews its liveness (one command, however many senders it holds:
//! a lease lasts as long as its holder's liveness), reads the live workers,
//! and computes by rendezvous hashing which senders it should own; it hands
//! over those another worker should now own, and takes those that are free,
//! or whose holder is gone, and should be its own. A dead worker's liveness
//! lapses, and the survivors take its senders, reclaiming its pending
//! entries.
//!
//! A worker whose liveness lapsed (cut off from Redis for longer than
//! `lease_ttl`) has already stopped sending (the local deadline of every
//! lease passed first) and may have lost its senders to others: it lets
//! them all go and comes back under a new name, since its old name must
//! never be alive again (another worker may be taking its leases on the
//! strength of its death).
//!
//! The per-sender gauges (paused, effective rate, queue depth and age) are
//! exported by the owner only: set when it takes a sender, removed when it
//! lets the sender go (see [`crate::depth`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::rules::assignment::owned_by;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::depth::{OwnedGauges, owned_gauges};
use crate::dispatcher::dispatch_sender;
use crate::lease::{LeaseKeeper, new_lease};
use crate::{Worker, unix_ms};

/// How often finished handovers and free senders are looked at.
const HANDOVER_TICK: std::time::Duration = std::time::Duration::from_millis(200);

struct Owned {
    keeper: LeaseKeeper,
    stop: CancellationToken,
    task: JoinHandle<Vec<Duration>>,
    /// Being handed over: the dispatcher is finishing its sends in flight.
    releasing: bool,
}

/// This worker's name on leases and in the registry: its consumer name,
/// with a suffix once its liveness has lapsed and it came back.
struct Identity {
    name: String,
    lapses: u32,
    joined: bool,
}

impl Identity {
    fn lapsed(&mut self, consumer: &str) {
        self.lapses += 1;
        self.name = format!("{consumer}.{}", self.lapses);
        self.joined = false;
    }
}

pub(crate) async fn run(worker: Arc<Worker>, shutdown: CancellationToken) {
    let settings = &worker.settings.worker;
    let senders: HashMap<String, Arc<SenderSettings>> = worker
        .settings
        .senders
        .iter()
        .map(|s| (s.phone_number_id.clone(), s.clone()))
        .collect();
    let all: Vec<String> = senders.keys().cloned().collect();
    let ttl_ms = u64::try_from(settings.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut identity = Identity {
        name: worker.consumer.clone(),
        lapses: 0,
        joined: false,
    };
    let mut owned: HashMap<String, Owned> = HashMap::new();
    // Dispatchers of senders this worker lost, still finishing their sends
    // in flight: the sender is not taken again until they have, so that
    // one process never runs two dispatchers for one sender.
    let mut stopping: HashMap<String, JoinHandle<Vec<Duration>>> = HashMap::new();
    let gauges = owned_gauges(&worker);
    // Liveness is renewed every `lease_renew`; handovers are checked more
    // often, so a sender moving between workers pauses for a moment only.
    let mut ticker = tokio::time::interval(HANDOVER_TICK.min(settings.lease_renew));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renewal: Option<Instant> = None;
    let mut live: Vec<String> = Vec::new();
    let mut desired: Vec<String> = Vec::new();
    // Workers started together first see each other, then share the
    // senders: taking everything at once would mean handing most of it
    // over again a second later.
    let mut settled = false;

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let renewal_due =
            last_renewal.is_none_or(|at| started.duration_since(at) >= settings.lease_renew);
        if renewal_due {
            last_renewal = Some(started);
            match worker
                .queue
                .heartbeat(&identity.name, unix_ms(), ttl_ms, !identity.joined)
                .await
            {
                Ok(Some(workers)) => {
                    identity.joined = true;
                    for state in owned.values() {
                        state.keeper.renewed(started, settings.lease_ttl);
                    }
                    if workers != live {
                        live = workers;
                        desired = owned_by(&identity.name, &all, &live)
                            .into_iter()
                            .map(str::to_owned)
                            .collect();
                    }
                }
                Ok(None) => {
                    tracing::error!(worker = %identity.name, "this worker's liveness lapsed; letting every sender go and rejoining");
                    for (pnid, state) in owned.drain() {
                        lose(&worker, &gauges, &pnid, &state);
                        stopping.insert(pnid, state.task);
                    }
                    identity.lapsed(&worker.consumer);
                    live.clear();
                    desired.clear();
                    settled = false;
                    last_renewal = None;
                    continue;
                }
                Err(error) => {
                    worker
                        .metrics
                        .redis_errors
                        .with_label_values(&["heartbeat"])
                        .inc();
                    tracing::warn!(%error, "heartbeat failed; sending stops when the leases run out");
                    continue;
                }
            }
        }

        // Hand over senders another worker should own now.
        for (pnid, state) in owned.iter_mut() {
            if !state.releasing && !desired.contains(pnid) {
                state.releasing = true;
                state.stop.cancel();
            }
        }
        let finished: Vec<String> = owned
            .iter()
            .filter(|(_, s)| s.task.is_finished())
            .map(|(pnid, _)| pnid.clone())
            .collect();
        for pnid in finished {
            if let Some(state) = owned.remove(&pnid) {
                if state.releasing {
                    release(&worker, &gauges, &pnid, &identity.name, state).await;
                } else {
                    // The dispatcher stopped by itself: the lease names
                    // another worker.
                    lose(&worker, &gauges, &pnid, &state);
                }
            }
        }

        stopping.retain(|_, task| !task.is_finished());

        // Take free senders that should be ours (once the workers started
        // together have seen each other).
        if !settled {
            settled = last_renewal
                .is_some_and(|at| started.duration_since(at) >= settings.lease_renew / 2);
            continue;
        }
        for pnid in &desired {
            if owned.contains_key(pnid) || stopping.contains_key(pnid) {
                continue;
            }
            let Some(sender) = senders.get(pnid) else {
                continue;
            };
            let requested_at = Instant::now();
            match worker.queue.acquire_lease(pnid, &identity.name).await {
                Ok(Some(handed_over)) => {
                    tracing::info!(sender = %sender.name, "lease acquired; draining");
                    worker
                        .metrics
                        .lease_changes
                        .with_label_values(&["acquired"])
                        .inc();
                    let (keeper, lease) = new_lease(settings.longest_send);
                    keeper.renewed(requested_at, settings.lease_ttl);
                    let stop = shutdown.child_token();
                    let sender_gauges = gauges.take(sender);
                    let task = tokio::spawn(dispatch_sender(
                        worker.clone(),
                        sender.clone(),
                        identity.name.clone(),
                        lease,
                        handed_over,
                        sender_gauges,
                        stop.clone(),
                    ));
                    owned.insert(
                        pnid.to_owned(),
                        Owned {
                            keeper,
                            stop,
                            task,
                            releasing: false,
                        },
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    worker
                        .metrics
                        .redis_errors
                        .with_label_values(&["acquire"])
                        .inc();
                    tracing::warn!(%error, "acquiring a lease failed");
                }
            }
        }
        worker.metrics.senders_owned.set(owned.len() as i64);
    }

    // Clean stop: every dispatcher finishes its sends in flight, then each
    // sender is handed over at once instead of waiting for its lease to lapse.
    for state in owned.values() {
        state.stop.cancel();
    }
    // All at once, and bounded: with Redis unreachable each release would
    // wait for its timeout, and the leases expire by themselves anyway.
    let name = identity.name.clone();
    let releases = owned.drain().map(|(pnid, state)| {
        let (worker, gauges, name) = (worker.clone(), gauges.clone(), name.clone());
        async move { release(&worker, &gauges, &pnid, &name, state).await }
    });
    let deadline = settings.shutdown_grace + settings.lease_ttl;
    let lost = futures_util::future::join_all(stopping.into_values());
    if tokio::time::timeout(
        deadline,
        futures_util::future::join(futures_util::future::join_all(releases), lost),
    )
    .await
    .is_err()
    {
        tracing::warn!("handing the senders over timed out; their leases expire by themselves");
    }
    gauges.release_all();
    crate::depth::forget(&worker);
    worker.metrics.senders_owned.set(0);
    let left = tokio::time::timeout(settings.lease_ttl, worker.queue.leave(&identity.name)).await;
    if let Ok(Err(error)) = left {
        tracing::warn!(%error, "could not leave the worker registry; it forgets this worker when its heartbeat lapses");
    }
}

/// The sender is no longer this worker's (its dispatcher found another
/// worker's name on the lease, or this worker's liveness lapsed): stop
/// sending at once.
fn lose(worker: &Worker, gauges: &OwnedGauges, pnid: &str, state: &Owned) {
    tracing::warn!(sender = %pnid, "lease lost; stopping");
    state.keeper.lost();
    state.stop.cancel();
    gauges.release(pnid);
    worker
        .metrics
        .lease_changes
        .with_label_values(&["lost"])
        .inc();
}

async fn release(worker: &Worker, gauges: &OwnedGauges, pnid: &str, name: &str, state: Owned) {
    let sends = state.task.await.unwrap_or_default();
    state.keeper.lost();
    // Before the lease is freed: the next owner exports them from now on.
    gauges.release(pnid);
    match worker.queue.release_lease(pnid, name, &sends).await {
        Ok(()) => {
            tracing::info!(sender = %pnid, "lease released");
            worker
                .metrics
                .lease_changes
                .with_label_values(&["released"])
                .inc();
        }
        Err(error) => {
            tracing::warn!(sender = %pnid, %error, "releasing a lease failed; it expires by itself")
        }
    }
}
