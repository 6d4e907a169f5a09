//! The Lua scripts that change several keys of one sender at once. Each
//! script's header says its keys and arguments; all keys of one call share
//! the sender's hash tag, so they also run on Redis Cluster (the parked
//! scripts build a recipient's key from a prefix the caller passes, with the
//! same hash tag, so it lives in the same slot).
//!
//! Every script starts with one prelude: the status ranks, generated from
//! the domain's [`MessageStatus`] (so the scripts and the domain cannot
//! disagree on which status comes later), the message's field names from
//! [`crate::fields`], and the helpers in `scripts/prelude.lua`.

use std::sync::LazyLock;

use gateway_domain::MessageStatus;
use redis::Script;

use crate::fields;

/// The enqueue script's source, for loading it ahead of a pipeline.
pub(crate) static ENQUEUE_SOURCE: LazyLock<String> =
    LazyLock::new(|| with_prelude(include_str!("scripts/enqueue.lua")));

pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(&ENQUEUE_SOURCE));
pub(crate) static PROMOTE_SCHEDULED: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/promote_scheduled.lua")));
pub(crate) static RECORD_SENT: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/record_sent.lua")));
pub(crate) static RECORD_FINAL: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/record_final.lua")));
pub(crate) static RECORD_PROGRESS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/record_progress.lua")));
pub(crate) static REPLAY_DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/replay_dead_letter.lua")));
pub(crate) static RECORD_INBOUND: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/record_inbound.lua")));
pub(crate) static APPLY_STATUS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/apply_status.lua")));
pub(crate) static REQUEUE_FAILED: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/requeue_failed.lua")));
pub(crate) static ACQUIRE_LEASE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/acquire_lease.lua")));
pub(crate) static PARK: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/park.lua")));
pub(crate) static ROUTE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/route.lua")));
pub(crate) static UNPARK: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/unpark.lua")));
pub(crate) static RELEASE_LEASE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("scripts/release_lease.lua")));

fn script(source: &str) -> Script {
    Script::new(&with_prelude(source))
}

fn with_prelude(source: &str) -> String {
    format!(
        "{}{}{}\n{source}",
        rank_table(),
        field_tables(),
        include_str!("scripts/prelude.lua")
    )
}

/// `MESSAGE_FIELDS` (in order), `REQUIRED_FIELDS` and `LEGACY_FIELDS`, as
/// the `fields` module names them.
fn field_tables() -> String {
    let message = fields::MESSAGE.map(|name| format!("'{name}'"));
    let required = fields::REQUIRED.map(|name| format!("['{name}'] = true"));
    let legacy = fields::LEGACY.map(|(name, before)| format!("['{name}'] = '{before}'"));
    format!(
        "local MESSAGE_FIELDS = {{{}}}\nlocal REQUIRED_FIELDS = {{{}}}\nlocal LEGACY_FIELDS = {{{}}}\n",
        message.join(", "),
        required.join(", "),
        legacy.join(", ")
    )
}

/// `local RANK = {queued = 0, ...}`: each status's [`MessageStatus::rank`].
fn rank_table() -> String {
    let ranks: Vec<String> = MessageStatus::ALL
        .iter()
        .map(|status| format!("{} = {}", status.as_str(), status.rank()))
        .collect();
    format!("local RANK = {{{}}}\n", ranks.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rank_table_is_the_domains() {
        let table = rank_table();
        for status in MessageStatus::ALL {
            let entry = format!("{} = {}", status.as_str(), status.rank());
            assert!(table.contains(&entry), "{entry} missing from {table}");
        }
        assert!(with_prelude("return 1").starts_with("local RANK = {queued = 0"));
    }

    #[test]
    fn the_field_tables_are_the_fields_modules() {
        let tables = field_tables();
        assert!(
            tables.contains("local MESSAGE_FIELDS = {'snd', 'cli', 'rcpt', 'kind', 'body', 'fb', 'meta', 'exp', 'cb'}"),
            "{tables}"
        );
        assert!(tables.contains("['rcpt'] = 'to'"), "{tables}");
        assert!(tables.contains("['body'] = true"), "{tables}");
    }
}
