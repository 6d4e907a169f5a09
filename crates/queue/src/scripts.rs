//! The Lua scripts that change several keys of one sender at once. Each
//! script's header says its keys and arguments; all keys of one call share
//! the sender's hash tag, so they also run on Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

pub(crate) const ENQUEUE_SOURCE: &str = include_str!("scripts/enqueue.lua");

static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_SOURCE));
static PROMOTE_SCHEDULED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/promote_scheduled.lua")));
static RECORD_SENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_sent.lua")));
static RECORD_FINAL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_final.lua")));
static RECORD_PROGRESS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_progress.lua")));
static REPLAY_DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/replay_dead_letter.lua")));
static RENEW_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/renew_lease.lua")));
static RELEASE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release_lease.lua")));

pub(crate) fn enqueue() -> &'static Script {
    &ENQUEUE
}

pub(crate) fn promote_scheduled() -> &'static Script {
    &PROMOTE_SCHEDULED
}

pub(crate) fn record_sent() -> &'static Script {
    &RECORD_SENT
}

pub(crate) fn record_final() -> &'static Script {
    &RECORD_FINAL
}

pub(crate) fn record_progress() -> &'static Script {
    &RECORD_PROGRESS
}

pub(crate) fn renew_lease() -> &'static Script {
    &RENEW_LEASE
}

pub(crate) fn release_lease() -> &'static Script {
    &RELEASE_LEASE
}

pub(crate) fn replay_dead_letter() -> &'static Script {
    &REPLAY_DEAD_LETTER
}
