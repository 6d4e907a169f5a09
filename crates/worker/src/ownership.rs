//! Which senders this worker drains. Every `worker.lease_renew_ms` the
//! worker records its heartbeat, reads the live workers, and computes by
//! rendezvous hashing which senders it should own; it renews the leases it
//! holds, hands over those another worker should now own, and takes those
//! that are free and should be its own. A dead worker's leases expire and
//! the survivors take its senders, reclaiming its pending entries.
//!
//! The per-sender gauges (paused, effective rate, queue depth and age) are
//! exported by the owner only: set when it takes a sender, removed when it
//! lets the sender go (see [`crate::depth`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use gateway_config::SenderSettings;
use gateway_domain::rules::assignment::owned_by;
use tokio::sync::watch;
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
    paused: watch::Sender<bool>,
    stop: CancellationToken,
    task: JoinHandle<Vec<i64>>,
    /// Being handed over: the dispatcher is finishing its sends in flight.
    releasing: bool,
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
    let mut owned: HashMap<String, Owned> = HashMap::new();
    let gauges = owned_gauges(&worker);
    // Leases are renewed every `lease_renew`; handovers are checked more
    // often, so a sender moving between workers pauses for a moment only.
    let mut ticker = tokio::time::interval(HANDOVER_TICK.min(settings.lease_renew));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renewal: Option<Instant> = None;
    let mut live: Vec<String> = Vec::new();
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
                .heartbeat(&worker.consumer, unix_ms(), ttl_ms)
                .await
            {
                Ok(workers) => live = workers,
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
            renew(&worker, &gauges, &mut owned, started, ttl_ms).await;
        }
        let desired: Vec<&str> = owned_by(&worker.consumer, &all, &live);

        // Hand over senders another worker should own now.
        for (pnid, state) in owned.iter_mut() {
            if !state.releasing && !desired.contains(&pnid.as_str()) {
                state.releasing = true;
                state.stop.cancel();
            }
        }
        let finished: Vec<String> = owned
            .iter()
            .filter(|(_, s)| s.releasing && s.task.is_finished())
            .map(|(pnid, _)| pnid.clone())
            .collect();
        for pnid in finished {
            if let Some(state) = owned.remove(&pnid) {
                release(&worker, &gauges, &pnid, state).await;
            }
        }

        // Take free senders that should be ours (once the workers started
        // together have seen each other).
        if !settled {
            settled = last_renewal
                .is_some_and(|at| started.duration_since(at) >= settings.lease_renew / 2);
            continue;
        }
        for pnid in desired {
            if owned.contains_key(pnid) {
                continue;
            }
            let Some(sender) = senders.get(pnid) else {
                continue;
            };
            let requested_at = Instant::now();
            match worker
                .queue
                .acquire_lease(pnid, &worker.consumer, ttl_ms)
                .await
            {
                Ok(Some(handed_over)) => {
                    tracing::info!(sender = %sender.name, "lease acquired; draining");
                    worker
                        .metrics
                        .lease_changes
                        .with_label_values(&["acquired"])
                        .inc();
                    let (keeper, lease) = new_lease();
                    keeper.renewed(requested_at, settings.lease_ttl);
                    let (paused_tx, paused_rx) = watch::channel(false);
                    let stop = shutdown.child_token();
                    let rate_gauge = gauges.take(sender);
                    let task = tokio::spawn(dispatch_sender(
                        worker.clone(),
                        sender.clone(),
                        lease,
                        paused_rx,
                        handed_over,
                        rate_gauge,
                        stop.clone(),
                    ));
                    owned.insert(
                        pnid.to_owned(),
                        Owned {
                            keeper,
                            paused: paused_tx,
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

        update_pauses(&worker, &gauges, &owned).await;
        worker.metrics.senders_owned.set(owned.len() as i64);
    }

    // Clean stop: every dispatcher finishes its sends in flight, then each
    // sender is handed over at once instead of waiting for its lease to lapse.
    for state in owned.values() {
        state.stop.cancel();
    }
    // All at once, and bounded: with Redis unreachable each release would
    // wait for its timeout, and the leases expire by themselves anyway.
    let releases = owned.drain().map(|(pnid, state)| {
        let (worker, gauges) = (worker.clone(), gauges.clone());
        async move { release(&worker, &gauges, &pnid, state).await }
    });
    let deadline = settings.shutdown_grace + settings.lease_ttl;
    if tokio::time::timeout(deadline, futures_util::future::join_all(releases))
        .await
        .is_err()
    {
        tracing::warn!("handing the senders over timed out; their leases expire by themselves");
    }
    gauges.release_all();
    crate::depth::forget(&worker);
    worker.metrics.senders_owned.set(0);
    let left = tokio::time::timeout(settings.lease_ttl, worker.queue.leave(&worker.consumer)).await;
    if let Ok(Err(error)) = left {
        tracing::warn!(%error, "could not leave the worker registry; it forgets this worker when its heartbeat lapses");
    }
}

/// Renews every lease this worker holds, including those being handed
/// over; a lease found taken stops its dispatcher at once.
async fn renew(
    worker: &Worker,
    gauges: &OwnedGauges,
    owned: &mut HashMap<String, Owned>,
    started: Instant,
    ttl_ms: u64,
) {
    let settings = &worker.settings.worker;
    let held: Vec<&str> = owned.keys().map(String::as_str).collect();
    match worker
        .queue
        .renew_leases(&held, &worker.consumer, ttl_ms)
        .await
    {
        Ok(renewed) => {
            let lost: Vec<String> = held
                .iter()
                .zip(renewed)
                .filter(|(_, ok)| !ok)
                .map(|(pnid, _)| (*pnid).to_owned())
                .collect();
            for (pnid, state) in owned.iter() {
                if !lost.contains(pnid) {
                    state.keeper.renewed(started, settings.lease_ttl);
                }
            }
            for pnid in lost {
                if let Some(state) = owned.remove(&pnid) {
                    tracing::warn!(sender = %pnid, "lease lost; stopping");
                    state.keeper.lost();
                    state.stop.cancel();
                    gauges.release(&pnid);
                    worker
                        .metrics
                        .lease_changes
                        .with_label_values(&["lost"])
                        .inc();
                }
            }
        }
        Err(error) => {
            worker
                .metrics
                .redis_errors
                .with_label_values(&["renew"])
                .inc();
            tracing::warn!(%error, "renewing leases failed");
        }
    }
}

async fn release(worker: &Worker, gauges: &OwnedGauges, pnid: &str, state: Owned) {
    let log = state.task.await.unwrap_or_default();
    state.keeper.lost();
    // Before the lease is freed: the next owner exports them from now on.
    gauges.release(pnid);
    let log: Vec<String> = log.iter().map(i64::to_string).collect();
    match worker
        .queue
        .release_lease(pnid, &worker.consumer, &log.join(","))
        .await
    {
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

async fn update_pauses(worker: &Worker, gauges: &OwnedGauges, owned: &HashMap<String, Owned>) {
    let pnids: Vec<&str> = owned.keys().map(String::as_str).collect();
    let Ok(states) = worker.queue.sender_states(&pnids).await else {
        return;
    };
    for (pnid, (_, paused)) in pnids.iter().zip(states) {
        let is_paused = paused.is_some();
        if let Some(state) = owned.get(*pnid) {
            state
                .paused
                .send_if_modified(|p| std::mem::replace(p, is_paused) != is_paused);
        }
        gauges.set_paused(pnid, is_paused);
    }
}
