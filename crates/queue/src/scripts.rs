//! The Lua scripts that change several keys of one sender at once. Each
//! script's header says its keys and arguments; all keys of one call share
//! the sender's hash tag, so they also run on Redis Cluster (the parked
//! scripts build a recipient's key from a prefix the caller passes, with the
//! same hash tag, so it lives in the same slot).

use std::sync::LazyLock;

use redis::Script;

pub(crate) const ENQUEUE_SOURCE: &str = include_str!("scripts/enqueue.lua");

pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_SOURCE));
pub(crate) static PROMOTE_SCHEDULED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/promote_scheduled.lua")));
pub(crate) static RECORD_SENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_sent.lua")));
pub(crate) static RECORD_FINAL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_final.lua")));
pub(crate) static RECORD_PROGRESS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_progress.lua")));
pub(crate) static REPLAY_DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/replay_dead_letter.lua")));
pub(crate) static RECORD_INBOUND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_inbound.lua")));
pub(crate) static APPLY_STATUS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/apply_status.lua")));
pub(crate) static REQUEUE_FAILED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/requeue_failed.lua")));
pub(crate) static ACQUIRE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/acquire_lease.lua")));
pub(crate) static PARK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/park.lua")));
pub(crate) static ROUTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/route.lua")));
pub(crate) static UNPARK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/unpark.lua")));
pub(crate) static RELEASE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release_lease.lua")));
