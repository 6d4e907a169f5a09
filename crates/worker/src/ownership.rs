//! Which senders this worker drains. Every `worker.lease_renew_ms` the
//! worker renews its liveness (one command per liveness key, however many
//! senders it holds: a lease lasts as long as its holder's liveness; see
//! `gateway_queue::LivenessRange`), registers in the list of live workers,
//! and computes by rendezvous hashing which senders it should own; it hands
//! over those another worker should now own, and takes those that are free,
//! or whose holder is gone, and should be its own. A dead worker's liveness
//! lapses, and the survivors take its senders, reclaiming its pending
//! entries.
//!
//! Each liveness key stands alone: on a Redis Cluster with a master down,
//! only the senders whose keys that master holds stop (their leases run
//! out); the rest go on. A key that lapsed (cut off from Redis for longer
//! than `lease_ttl`) means the senders it covered were already stopped (the
//! local deadline of every lease passed first) and may be another worker's
//! now: the worker lets them go and comes back in that range under a new
//! name, since the old one must never be alive there again (another worker
//! may be taking its leases on the strength of its death).
//!
//! The numbers of a WABA with a rate of its own (`[[wabas]]`) are owned
//! together: they hash as one, and a worker takes the WABA's own lease
//! (with the shared window the previous owner left) before any of its
//! numbers, lets it go only after all of them, and stops their sends when
//! its lease on the WABA runs out. So one worker at a time sends for a
//! limited WABA, and the cap holds across workers as a sender's rate does.
//!
//! The per-sender gauges (paused, effective rate, queue depth and age) are
//! exported by the owner only: set when it takes a sender, removed when it
//! lets the sender go (see [`crate::depth`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::rules::assignment::owned_by;
use gateway_queue::LivenessRange;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::depth::{OwnedGauges, owned_gauges};
use crate::dispatcher::{Takeover, dispatch_sender, handed_over_sends};
use crate::lease::{LeaseKeeper, new_lease};
use crate::waba_rate::WabaRate;
use crate::{Worker, unix_ms};

/// How many times a starting worker reads the registry of live workers,
/// one tick apart, before it takes senders: workers started together then
/// see each other first (see `run`).
const REGISTRY_READS_BEFORE_TAKING: u8 = 2;

/// How often finished handovers and free senders are looked at.
const HANDOVER_TICK: std::time::Duration = std::time::Duration::from_millis(200);

struct Owned {
    /// The liveness key that keeps the lease.
    range: LivenessRange,
    /// The limited WABA the sender is owned with, if any: its lease must
    /// last too.
    waba: Option<String>,
    keeper: LeaseKeeper,
    stop: CancellationToken,
    task: JoinHandle<Vec<Duration>>,
    /// Being handed over: the dispatcher is finishing its sends in flight.
    releasing: bool,
}

/// A limited WABA whose lease this worker holds: its numbers may be taken.
struct HeldWaba {
    range: LivenessRange,
    rate: WabaRate,
    /// Being handed over: let go once none of its numbers is owned here.
    releasing: bool,
}

/// How the configured senders are shared out: by sender, or by limited WABA.
struct Units {
    /// The unit each sender is owned as: its own id, or its WABA's lease id.
    of_sender: HashMap<String, String>,
    /// Each sender's limited WABA, if it has one.
    waba_of: HashMap<String, String>,
    /// Limited WABAs by the unit (lease id) they are owned as, with their rate.
    wabas: HashMap<String, (String, u32)>,
    all: Vec<String>,
}

impl Units {
    fn new(worker: &Worker) -> Self {
        let settings = &worker.settings;
        let (mut of_sender, mut waba_of, mut wabas) =
            (HashMap::new(), HashMap::new(), HashMap::new());
        for sender in &settings.senders {
            let pnid = sender.phone_number_id.clone();
            let unit = match settings.waba_cap(sender) {
                Some(cap) => {
                    let unit = gateway_queue::keys::waba_lease_id(&cap.id);
                    waba_of.insert(pnid.clone(), cap.id.clone());
                    wabas.insert(unit.clone(), (cap.id.clone(), cap.rate_per_second));
                    unit
                }
                None => pnid.clone(),
            };
            of_sender.insert(pnid, unit);
        }
        let mut all: Vec<String> = of_sender.values().cloned().collect();
        all.sort_unstable();
        all.dedup();
        Self {
            of_sender,
            waba_of,
            wabas,
            all,
        }
    }

    /// The senders and the limited WABAs (by id) this worker should own.
    fn desired(&self, consumer: &str, live: &[String]) -> (HashSet<String>, HashSet<String>) {
        let units: HashSet<&str> = owned_by(consumer, &self.all, live).into_iter().collect();
        let senders = self
            .of_sender
            .iter()
            .filter(|(_, unit)| units.contains(unit.as_str()))
            .map(|(pnid, _)| pnid.clone())
            .collect();
        let wabas = self
            .wabas
            .iter()
            .filter(|(unit, _)| units.contains(unit.as_str()))
            .map(|(_, (id, _))| id.clone())
            .collect();
        (senders, wabas)
    }
}

/// This worker's names on leases: its consumer name, with a suffix in a
/// range of the keyspace where its liveness lapsed and it came back.
struct Identity {
    consumer: String,
    lapses: HashMap<LivenessRange, u32>,
    /// The ranges whose liveness key this worker keeps, with when the last
    /// renewal that succeeded was asked for. Never given up while it runs: a
    /// key let go would lapse, and the name with it.
    joined: HashMap<LivenessRange, Instant>,
}

impl Identity {
    fn holder(&self, range: LivenessRange) -> String {
        match self.lapses.get(&range) {
            Some(lapses) => format!("{}.{lapses}", self.consumer),
            None => self.consumer.clone(),
        }
    }

    fn lapsed(&mut self, range: LivenessRange) {
        *self.lapses.entry(range).or_default() += 1;
        self.joined.remove(&range);
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
    let units = Units::new(&worker);
    let ttl_ms = u64::try_from(settings.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut identity = Identity {
        consumer: worker.consumer.clone(),
        lapses: HashMap::new(),
        joined: HashMap::new(),
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
    // A set: with a thousand senders, a list searched once per owned
    // sender every tick was most of an idle worker's CPU.
    let mut desired: HashSet<String> = HashSet::new();
    let mut desired_wabas: HashSet<String> = HashSet::new();
    let mut wabas_held: HashMap<String, HeldWaba> = HashMap::new();
    // Workers started together see each other before they share the
    // senders: a worker reads the registry on its first tick, and again on
    // the next (finding those that registered meanwhile), and only then
    // takes senders. Taking everything at once would mean handing most of
    // it over again a second later.
    let mut registry_reads = 0u8;

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let settled = registry_reads >= REGISTRY_READS_BEFORE_TAKING;
        let renewal_due = !settled
            || last_renewal.is_none_or(|at| started.duration_since(at) >= settings.lease_renew);
        if renewal_due {
            last_renewal = Some(started);
            let queue = &worker.queue;
            let renewals = identity.joined.keys().map(|&range| {
                let holder = identity.holder(range);
                async move {
                    (
                        range,
                        queue.renew_liveness(&holder, range, ttl_ms, false).await,
                    )
                }
            });
            let (registered, renewals) = futures_util::future::join(
                queue.register(&identity.consumer, unix_ms(), ttl_ms),
                futures_util::future::join_all(renewals),
            )
            .await;
            for (range, renewal) in renewals {
                match renewal {
                    Ok(true) => {
                        identity.joined.insert(range, started);
                    }
                    Ok(false) => {
                        tracing::error!(worker = %identity.holder(range), ?range, "this worker's liveness lapsed; letting the senders it covered go");
                        let lapsed: Vec<String> = owned
                            .iter()
                            .filter(|(_, state)| state.range == range)
                            .map(|(pnid, _)| pnid.clone())
                            .collect();
                        for pnid in lapsed {
                            if let Some(state) = owned.remove(&pnid) {
                                lose(&worker, &gauges, &pnid, &state);
                                stopping.insert(pnid, state.task);
                            }
                        }
                        // A WABA lease in the range went with it: its numbers
                        // stop at once and are handed over (their own leases
                        // may be alive). Their sends ended a safety margin
                        // before the lapse, so the next owner of the WABA
                        // may start with an empty window.
                        wabas_held.retain(|waba, held| {
                            if held.range != range {
                                return true;
                            }
                            for state in owned.values_mut() {
                                if state.waba.as_ref() == Some(waba) {
                                    state.keeper.lost();
                                    state.releasing = true;
                                    state.stop.cancel();
                                }
                            }
                            false
                        });
                        identity.lapsed(range);
                    }
                    Err(error) => {
                        worker.metrics.redis_failed("heartbeat");
                        tracing::warn!(%error, ?range, "renewing this worker's liveness failed; the senders it covers stop when their leases run out");
                    }
                }
            }
            for state in owned.values() {
                if let Some(since) = lease_since(&identity, &wabas_held, state.range, &state.waba) {
                    state.keeper.renewed(since, settings.lease_ttl);
                }
            }
            match registered {
                Ok(workers) => {
                    registry_reads = registry_reads.saturating_add(1);
                    if workers != live {
                        live = workers;
                        (desired, desired_wabas) = units.desired(&identity.consumer, &live);
                    }
                }
                Err(error) => {
                    worker.metrics.redis_failed("register");
                    tracing::warn!(%error, "registering this worker failed; the senders are shared out as before");
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
        for (waba, held) in wabas_held.iter_mut() {
            held.releasing |= !desired_wabas.contains(waba);
        }
        let finished: Vec<String> = owned
            .iter()
            .filter(|(_, s)| s.task.is_finished())
            .map(|(pnid, _)| pnid.clone())
            .collect();
        for pnid in finished {
            if let Some(state) = owned.remove(&pnid) {
                if state.releasing {
                    let holder = identity.holder(state.range);
                    release(&worker, &gauges, &pnid, &holder, state).await;
                } else {
                    // The dispatcher stopped by itself: the lease names
                    // another worker.
                    lose(&worker, &gauges, &pnid, &state);
                }
            }
        }

        stopping.retain(|_, task| !task.is_finished());
        // A WABA goes once none of its numbers is owned or stopping here.
        let busy: HashSet<&String> = owned
            .keys()
            .chain(stopping.keys())
            .filter_map(|pnid| units.waba_of.get(pnid))
            .collect();
        let done: Vec<String> = wabas_held
            .iter()
            .filter(|(waba, held)| held.releasing && !busy.contains(waba))
            .map(|(waba, _)| waba.clone())
            .collect();
        for waba in done {
            if let Some(held) = wabas_held.remove(&waba) {
                let holder = identity.holder(held.range);
                release_waba(&worker, &waba, &holder, &held).await;
            }
        }

        // Take free senders that should be ours (once the workers started
        // together have seen each other).
        if registry_reads < REGISTRY_READS_BEFORE_TAKING {
            continue;
        }
        for waba in &desired_wabas {
            // Not while numbers of an earlier hold are still stopping.
            let leftover = owned
                .keys()
                .chain(stopping.keys())
                .any(|pnid| units.waba_of.get(pnid) == Some(waba));
            if wabas_held.contains_key(waba) || leftover {
                continue;
            }
            let lease_id = gateway_queue::keys::waba_lease_id(waba);
            let Some((_, limit)) = units.wabas.get(&lease_id) else {
                continue;
            };
            let range = worker.queue.liveness_range(&lease_id);
            if !identity.joined.contains_key(&range)
                && join(&worker, &mut identity, range, ttl_ms).await.is_none()
            {
                continue;
            }
            let holder = identity.holder(range);
            match worker.queue.acquire_lease(&lease_id, &holder).await {
                Ok(Some(handed_over)) => {
                    tracing::info!(waba = %waba, "WABA lease acquired; its numbers share its rate here");
                    let sends = handed_over_sends(Instant::now(), &handed_over.unwrap_or_default());
                    let held = HeldWaba {
                        range,
                        rate: WabaRate::new(*limit, sends),
                        releasing: false,
                    };
                    wabas_held.insert(waba.clone(), held);
                }
                Ok(None) => {}
                Err(error) => {
                    worker.metrics.redis_failed("acquire");
                    tracing::warn!(%error, "acquiring a WABA's lease failed");
                }
            }
        }
        for pnid in &desired {
            if owned.contains_key(pnid) || stopping.contains_key(pnid) {
                continue;
            }
            let Some(sender) = senders.get(pnid) else {
                continue;
            };
            // A limited WABA's number only under the WABA's lease.
            let waba = units.waba_of.get(pnid).cloned();
            let share = match &waba {
                Some(waba) => match wabas_held.get(waba) {
                    Some(held) if !held.releasing => Some(held.rate.join()),
                    _ => continue,
                },
                None => None,
            };
            let range = worker.queue.liveness_range(pnid);
            let holder = identity.holder(range);
            if !identity.joined.contains_key(&range)
                && join(&worker, &mut identity, range, ttl_ms).await.is_none()
            {
                continue;
            }
            let Some(alive_since) = lease_since(&identity, &wabas_held, range, &waba) else {
                continue;
            };
            match worker.queue.acquire_lease(pnid, &holder).await {
                Ok(Some(handed_over)) => {
                    tracing::info!(sender = %sender.name, "lease acquired; draining");
                    worker
                        .metrics
                        .lease_changes
                        .with_label_values(&["acquired"])
                        .inc();
                    let (keeper, lease) = new_lease(settings.longest_send);
                    // The lease lasts as long as the liveness key: from its
                    // last renewal on.
                    keeper.renewed(alive_since, settings.lease_ttl);
                    let stop = shutdown.child_token();
                    let sender_gauges = gauges.take(sender);
                    let takeover = Takeover {
                        handed_over,
                        waba: share,
                    };
                    let task = tokio::spawn(dispatch_sender(
                        worker.clone(),
                        sender.clone(),
                        holder,
                        lease,
                        takeover,
                        sender_gauges,
                        stop.clone(),
                    ));
                    owned.insert(
                        pnid.to_owned(),
                        Owned {
                            range,
                            waba,
                            keeper,
                            stop,
                            task,
                            releasing: false,
                        },
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    worker.metrics.redis_failed("acquire");
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
    let releases = owned.drain().map(|(pnid, state)| {
        let (worker, gauges) = (worker.clone(), gauges.clone());
        let holder = identity.holder(state.range);
        async move { release(&worker, &gauges, &pnid, &holder, state).await }
    });
    let deadline = settings.shutdown_grace + settings.lease_ttl;
    let lost = futures_util::future::join_all(stopping.into_values());
    let handover = async {
        futures_util::future::join(futures_util::future::join_all(releases), lost).await;
        // The WABAs after their numbers: their windows hold all the sends.
        let wabas = wabas_held.iter().map(|(waba, held)| {
            let holder = identity.holder(held.range);
            let worker = &worker;
            async move { release_waba(worker, waba, &holder, held).await }
        });
        futures_util::future::join_all(wabas).await;
    };
    if tokio::time::timeout(deadline, handover).await.is_err() {
        tracing::warn!("handing the senders over timed out; their leases expire by themselves");
    }
    gauges.release_all();
    crate::depth::forget(&worker);
    worker.metrics.senders_owned.set(0);
    let liveness: Vec<(String, LivenessRange)> = identity
        .joined
        .keys()
        .map(|&range| (identity.holder(range), range))
        .collect();
    let left = tokio::time::timeout(
        settings.lease_ttl,
        worker.queue.leave(&identity.consumer, &liveness),
    )
    .await;
    if let Ok(Err(error)) = left {
        tracing::warn!(%error, "could not leave the worker registry; it forgets this worker when its heartbeat lapses");
    }
}

/// Creates this worker's liveness key in `range`, before it takes a lease
/// there; when the key's life began (`None`: not now).
async fn join(
    worker: &Worker,
    identity: &mut Identity,
    range: LivenessRange,
    ttl_ms: u64,
) -> Option<Instant> {
    let requested_at = Instant::now();
    let holder = identity.holder(range);
    match worker
        .queue
        .renew_liveness(&holder, range, ttl_ms, true)
        .await
    {
        Ok(true) => {
            identity.joined.insert(range, requested_at);
            Some(requested_at)
        }
        Ok(false) => {
            // The name is alive there already: it must have lapsed and
            // come back; take a new one.
            identity.lapsed(range);
            None
        }
        Err(error) => {
            worker.metrics.redis_failed("heartbeat");
            tracing::warn!(%error, ?range, "joining a liveness range failed");
            None
        }
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

/// When the lease of a sender in `range` (owned with `waba`, if limited)
/// was last known to hold: the older of its own liveness renewal and its
/// WABA's, so that a sender never outlasts its WABA's lease.
fn lease_since(
    identity: &Identity,
    wabas_held: &HashMap<String, HeldWaba>,
    range: LivenessRange,
    waba: &Option<String>,
) -> Option<Instant> {
    let own = *identity.joined.get(&range)?;
    match waba {
        None => Some(own),
        Some(waba) => {
            let held = wabas_held.get(waba)?;
            Some(own.min(*identity.joined.get(&held.range)?))
        }
    }
}

/// Hands a WABA over with its shared window's sends, once its numbers are.
async fn release_waba(worker: &Worker, waba: &str, holder: &str, held: &HeldWaba) {
    let now = Instant::now();
    let sends: Vec<Duration> = held
        .rate
        .recent()
        .into_iter()
        .map(|at| now.saturating_duration_since(at))
        .collect();
    let lease_id = gateway_queue::keys::waba_lease_id(waba);
    match worker.queue.release_lease(&lease_id, holder, &sends).await {
        Ok(()) => tracing::info!(waba = %waba, "WABA lease released"),
        Err(error) => {
            tracing::warn!(waba = %waba, %error, "releasing a WABA's lease failed; it expires by itself")
        }
    }
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
