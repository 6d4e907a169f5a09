//! The Lua scripts that change several keys of one sender at once. Each
//! script's header says its keys and arguments; all keys of one call share
//! the sender's hash tag, so they also run on Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

pub(crate) const ENQUEUE_SOURCE: &str = include_str!("scripts/enqueue.lua");

static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_SOURCE));
static RECORD_SENT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_sent.lua")));
static RECORD_FAILED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/record_failed.lua")));

pub(crate) fn enqueue() -> &'static Script {
    &ENQUEUE
}

pub(crate) fn record_sent() -> &'static Script {
    &RECORD_SENT
}

pub(crate) fn record_failed() -> &'static Script {
    &RECORD_FAILED
}
