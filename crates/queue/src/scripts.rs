//! The Lua scripts that change several keys of one sender (or of one
//! client's quotas) at once. Each script's header says what it does; all
//! keys of one call share the sender's (or client's) hash tag, so they also run on Redis Cluster (the parked scripts
//! build a recipient's key from a prefix the caller passes, with the same
//! hash tag, so it lives in the same slot).
//!
//! A script's keys and arguments are named once, below: the caller fills a
//! struct of those names (the compiler checks none is missing or misspelt),
//! and the script reads them as Lua locals of the same names, declared in
//! the same order. Neither side counts positions. Keys and arguments a
//! script takes beyond those (a variable number) follow from `MORE_KEYS`
//! and `MORE` on.
//!
//! A script starts with the shared parts it uses (its prelude): the status
//! ranks `RANK`, generated from the domain's [`MessageStatus`] (so the
//! scripts and the domain cannot disagree on which status comes later), and
//! the helpers in `scripts/prelude/` (`message_fields` with the field names
//! from [`crate::fields`]). Only what it uses: Lua runs a script's prelude
//! on every call, and the record scripts run once per message.

use std::borrow::Cow;
use std::sync::LazyLock;

use gateway_domain::MessageStatus;
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisResult, RedisWrite, Script, ServerErrorKind, ToRedisArgs,
};

use crate::fields;

/// One key or argument of a script call: text, or a number (written as
/// text, as Redis takes every argument).
pub(crate) enum Arg<'a> {
    Text(Cow<'a, str>),
    Number(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(text: &'a str) -> Self {
        Self::Text(Cow::Borrowed(text))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(text: &'a String) -> Self {
        Self::Text(Cow::Borrowed(text))
    }
}

impl From<String> for Arg<'_> {
    fn from(text: String) -> Self {
        Self::Text(Cow::Owned(text))
    }
}

impl From<i64> for Arg<'_> {
    fn from(number: i64) -> Self {
        Self::Number(number)
    }
}

impl From<u64> for Arg<'_> {
    fn from(number: u64) -> Self {
        Self::Number(i64::try_from(number).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Arg<'_> {
    fn from(number: u32) -> Self {
        Self::Number(i64::from(number))
    }
}

impl From<usize> for Arg<'_> {
    fn from(number: usize) -> Self {
        Self::Number(i64::try_from(number).unwrap_or(i64::MAX))
    }
}

/// A flag, as the scripts read it: `'1'` or `'0'`.
impl From<bool> for Arg<'_> {
    fn from(flag: bool) -> Self {
        Self::Text(Cow::Borrowed(if flag { "1" } else { "0" }))
    }
}

impl ToRedisArgs for Arg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        match self {
            Self::Text(text) => out.write_arg(text.as_bytes()),
            Self::Number(number) => number.write_redis_args(out),
        }
    }
}

/// One call of a script: its keys and arguments, each list written into
/// one buffer as they are added, and sent as `EVALSHA` (the record scripts
/// take some forty per message, and redis's `ScriptInvocation` allocates
/// each one and copies them all again to send). A Redis that does not have
/// the script (restarted, or another node) gets it loaded, and the call is
/// made again.
pub(crate) struct ScriptCall {
    script: &'static Script,
    keys: Cmd,
    args: Cmd,
}

impl ScriptCall {
    fn new(script: &'static Script) -> Self {
        Self {
            script,
            keys: Cmd::with_capacity(8, 256),
            args: Cmd::with_capacity(48, 1024),
        }
    }

    /// Adds a key after those the script names.
    pub(crate) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        self.keys.arg(key);
        self
    }

    /// Adds an argument after those the script names.
    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.args.arg(arg);
        self
    }

    pub(crate) async fn invoke_async<T: FromRedisValue>(
        &self,
        con: &mut impl redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        let command = self.command();
        match command.query_async(con).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(con).await?;
                command.query_async(con).await
            }
            answer => answer,
        }
    }

    /// The `EVALSHA` command. A pipeline of them loads the script first
    /// (`SCRIPT LOAD`): a pipeline is not tried again.
    pub(crate) fn command(&self) -> Cmd {
        let parts = || self.keys.args_iter().chain(self.args.args_iter());
        let keys = self.keys.args_iter().len();
        let bytes = parts().map(|part| match part {
            redis::Arg::Simple(bytes) => bytes.len(),
            _ => 0,
        });
        let mut command = Cmd::with_capacity(
            3 + keys + self.args.args_iter().len(),
            64 + bytes.sum::<usize>(),
        );
        command.arg("EVALSHA").arg(self.script.get_hash()).arg(keys);
        for part in parts() {
            // Only bytes are ever added (`arg`, `key`), never a cursor.
            if let redis::Arg::Simple(bytes) = part {
                command.arg(bytes);
            }
        }
        command
    }
}

/// Declares scripts: for each, a struct with one field per key and per
/// argument, in the order the script receives them, and the script's
/// source with those names as Lua locals.
macro_rules! scripts {
    ($(
        $(#[$doc:meta])*
        $name:ident = $file:literal {
            keys: [$($key:ident),* $(,)?],
            args: [$($arg:ident),* $(,)?] $(,)?
        }
    )*) => {$(
        $(#[$doc])*
        pub(crate) struct $name<'a> {
            $(pub $key: Arg<'a>,)*
            $(pub $arg: Arg<'a>,)*
        }

        impl $name<'_> {
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];
            const ARGS: &'static [&'static str] = &[$(stringify!($arg)),*];
            const FILE: &'static str = include_str!(concat!("scripts/", $file));

            /// The whole source, as Redis runs it.
            pub(crate) fn source() -> &'static str {
                static SOURCE: LazyLock<String> = LazyLock::new(|| {
                    with_prelude($name::FILE, $name::KEYS, $name::ARGS)
                });
                &SOURCE
            }

            /// The call with its named keys and arguments; any further keys
            /// and arguments follow.
            pub(crate) fn invocation(self) -> ScriptCall {
                static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new($name::source()));
                let mut call = ScriptCall::new(&SCRIPT);
                $(call.key(self.$key);)*
                $(call.arg(self.$arg);)*
                call
            }
        }
    )*

        /// Every script: its file, body and names, for the tests.
        #[cfg(test)]
        const ALL: &[(&str, &str, &[&str], &[&str])] = &[
            $(($file, $name::FILE, $name::KEYS, $name::ARGS),)*
        ];
    };
}

scripts! {
    /// Stores an accepted message that needs more than a plain XADD. The
    /// idempotency or repeat key, if any, follows as a further key; the
    /// record's and then the entry's field/value pairs follow as arguments.
    Enqueue = "enqueue.lua" {
        keys: [stream_key, scheduled_key, record_key],
        args: [
            sender, id_mark, fingerprint, guard_ttl_ms, scheduled_id, due_ms,
            record_ttl_ms, scheduled_member, record_pair_args,
        ],
    }

    /// Moves due scheduled messages into their streams.
    PromoteScheduled = "promote_scheduled.lua" {
        keys: [scheduled_key, transactional_key, bulk_key],
        args: [now_ms, most, fate_prefix],
    }

    /// Meta accepted a message; the record's field/value pairs follow.
    RecordSent = "record_sent.lua" {
        keys: [stream_key, record_key, wamid_key, recent_key, fate_key],
        args: [
            group, entry_id, message_id, wamid, now_ms, attempts, record_ttl_ms,
            event, queued_event, fallback_used, recipient, recent_ms,
        ],
    }

    /// A message ended unsent; the entry's and then the record's
    /// field/value pairs follow.
    RecordFinal = "record_final.lua" {
        keys: [stream_key, record_key, dead_key, fate_key],
        args: [
            group, entry_id, message_id, code, title, now_ms, attempts, event,
            queued_event, record_ttl_ms, dead_max_len, reason, final_status,
            fallback_used, entry_pair_args,
        ],
    }

    /// An attempt failed and another is due; the record's field/value pairs follow.
    RecordProgress = "record_progress.lua" {
        keys: [record_key, stream_key, fate_key],
        args: [
            status, now_ms, attempts, next_attempt_ms, code, title, fallback_used,
            record_ttl_ms, event, queued_event, group, entry_id,
        ],
    }

    /// Puts a dead letter back on its queue; the entry's field/value pairs follow.
    ReplayDeadLetter = "replay_dead_letter.lua" {
        keys: [dead_key, stream_key, record_key],
        args: [dead_entry_id, message_id, now_ms, event, record_ttl_ms],
    }

    /// A user's message arrived; the window keys follow.
    RecordInbound = "record_inbound.lua" {
        keys: [seen_key],
        args: [inbound_ms, closes_ms, now_ms, seen_ttl_ms],
    }

    /// A status from Meta's webhook for a message we sent.
    ApplyStatus = "apply_status.lua" {
        keys: [record_key, dead_key],
        args: [
            event_wamid, new_status, event, now_ms, code, title, reason,
            dead_max_len, message_id,
        ],
    }

    /// Queues a read receipt for the sender's owner, up to a bound.
    PushRead = "push_read.lua" {
        keys: [reads_key],
        args: [request, most, ttl_ms],
    }

    /// Marks a field of a message's record once (a billed message).
    MarkOnce = "mark_once.lua" {
        keys: [record_key],
        args: [field, now_ms],
    }

    /// Meta reported a failure worth another try: queue the message again.
    RequeueFailed = "requeue_failed.lua" {
        keys: [record_key, scheduled_key, window_key],
        args: [
            event_wamid, event, now_ms, code, title, due_ms, message_id, lane_code,
            send_fallback, close_window,
        ],
    }

    /// Takes a sender's lease.
    AcquireLease = "acquire_lease.lua" {
        keys: [lease_key, send_log_key],
        args: [worker, gone_holder],
    }

    /// Hands a sender over.
    ReleaseLease = "release_lease.lua" {
        keys: [lease_key, send_log_key],
        args: [worker, sends, send_log_ttl_ms],
    }

    /// Parks messages of one recipient; the entry ids follow.
    Park = "park.lua" {
        keys: [stream_key, parked_key, recipient_parked_key],
        args: [group, parked_consumer, recipient, due_ms, now_ms],
    }

    /// Reads or routes entries, parking those of parked recipients; in
    /// 'given' mode the (entry id, recipient) pairs follow.
    Route = "route.lua" {
        keys: [stream_key, parked_key],
        args: [group, consumer, count, parked_consumer, parked_prefix, recipient_field, mode],
    }

    /// Takes what a client may still send from its quotas; three keys
    /// and two arguments per quota scope follow.
    ClientQuota = "client_quota.lua" {
        keys: [],
        args: [wanted, ms_to_day_end, day_key_ttl_ms],
    }

    /// Asks for room under a portfolio's messaging limit.
    PortfolioAdmit = "portfolio_admit.lua" {
        keys: [users_key, limit_key],
        args: [recipient, now_ms, window_ms, limit_override, hold_at],
    }

    /// A worker claims a message it is about to send whose fate key is set
    /// (cancelled, or an old mark).
    ClaimSend = "claim_send.lua" {
        keys: [fate_key, stream_key],
        args: [group, entry_id, sending_ttl_ms],
    }

    /// A worker gives back its claim on a message it did not send.
    ReleaseClaim = "release_claim.lua" {
        keys: [fate_key],
        args: [],
    }

    /// A client cancels a message, unless it is being or was sent.
    Cancel = "cancel.lua" {
        keys: [fate_key, record_key, stream_key],
        args: [
            group, entry_id, now_ms, event, queued_event, record_ttl_ms, accepted_ms,
            lane_code, client_field, recipient_field, callback_field, metadata_field,
        ],
    }

    /// Takes parked messages that are due back into the worker.
    Unpark = "unpark.lua" {
        keys: [stream_key, parked_key],
        args: [group, consumer, due_by_ms, most, most_per_recipient, left_due_ms, parked_prefix],
    }
}

/// The prelude the body uses, then the script's names as locals, then
/// the body.
fn with_prelude(body: &str, keys: &[&str], args: &[&str]) -> String {
    let mut source = String::new();
    if body.contains("RANK") {
        source.push_str(&rank_table());
    }
    if body.contains("history_with(") {
        source.push_str(include_str!("scripts/prelude/history_with.lua"));
    }
    if body.contains("message_fields(") {
        source.push_str(&field_tables());
        source.push_str(include_str!("scripts/prelude/message_fields.lua"));
    }
    source.push_str(&locals(keys, "KEYS", "MORE_KEYS"));
    source.push_str(&locals(args, "ARGV", "MORE"));
    source.push_str(body);
    source
}

/// `local a, b = KEYS[1], KEYS[2]` and `local MORE_KEYS = 3`: each name
/// bound to its place, and where further values start.
fn locals(names: &[&str], table: &str, more: &str) -> String {
    let bound = if names.is_empty() {
        String::new()
    } else {
        let places: Vec<String> = (1..=names.len()).map(|i| format!("{table}[{i}]")).collect();
        format!("local {} = {}\n", names.join(", "), places.join(", "))
    };
    format!("{bound}local {more} = {}\n", names.len() + 1)
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

    /// Keys added after the named ones still come before every argument,
    /// and Redis is told how many there are.
    #[test]
    fn a_call_sends_its_keys_and_then_its_arguments() {
        let mut call = RecordInbound {
            seen_key: "seen".into(),
            inbound_ms: 1_i64.into(),
            closes_ms: 2_i64.into(),
            now_ms: 3_i64.into(),
            seen_ttl_ms: 4_i64.into(),
        }
        .invocation();
        call.key("window:a").arg("").key("window:b");
        let command = call.command();
        let sent: Vec<&[u8]> = command
            .args_iter()
            .map(|part| match part {
                redis::Arg::Simple(bytes) => bytes,
                _ => b"?",
            })
            .collect();
        let hash = Script::new(RecordInbound::source()).get_hash().to_owned();
        let expected: Vec<&[u8]> = vec![
            b"EVALSHA",
            hash.as_bytes(),
            b"3",
            b"seen",
            b"window:a",
            b"window:b",
            b"1",
            b"2",
            b"3",
            b"4",
            b"",
        ];
        assert_eq!(sent, expected);
    }

    #[test]
    fn the_rank_table_is_the_domains() {
        let table = rank_table();
        for status in MessageStatus::ALL {
            let entry = format!("{} = {}", status.as_str(), status.rank());
            assert!(table.contains(&entry), "{entry} missing from {table}");
        }
        assert!(with_prelude("return RANK.sent", &[], &[]).starts_with("local RANK = {queued = 0"));
    }

    #[test]
    fn the_field_tables_are_the_fields_modules() {
        let tables = field_tables();
        assert!(
            tables.contains("local MESSAGE_FIELDS = {'snd', 'cli', 'rcpt', 'kind', 'body', 'fb', 'meta', 'exp', 'cb', 'tc', 'ftc'}"),
            "{tables}"
        );
        assert!(tables.contains("['rcpt'] = 'to'"), "{tables}");
        assert!(tables.contains("['body'] = true"), "{tables}");
    }

    #[test]
    fn the_names_are_bound_in_order() {
        let bound = locals(&["stream_key", "record_key"], "KEYS", "MORE_KEYS");
        assert_eq!(
            bound,
            "local stream_key, record_key = KEYS[1], KEYS[2]\nlocal MORE_KEYS = 3\n"
        );
        assert_eq!(locals(&[], "ARGV", "MORE"), "local MORE = 1\n");
    }

    /// A script reads its keys and arguments by name only, and uses every
    /// name it declares (a name it does not use is likely a misspelling of
    /// one it does).
    #[test]
    fn every_script_reads_its_values_by_the_names_it_declares() {
        for (file, body, keys, args) in ALL {
            for table in ["KEYS[", "ARGV["] {
                let by_number = body.match_indices(table).any(|(at, _)| {
                    body[at + table.len()..].starts_with(|c: char| c.is_ascii_digit())
                });
                assert!(!by_number, "{file} reads {table}n] by position");
            }
            for name in keys.iter().chain(args.iter()) {
                let used = body.match_indices(name).any(|(at, _)| {
                    let before = body[..at].chars().next_back();
                    let after = body[at + name.len()..].chars().next();
                    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                    !word(before) && !word(after)
                });
                assert!(used, "{file} declares {name} but does not use it");
            }
        }
    }

    /// A script gets the parts of the prelude it uses, and only those.
    #[test]
    fn a_script_starts_with_the_prelude_it_uses() {
        let bare = with_prelude("return 1", &[], &["a"]);
        assert_eq!(
            bare,
            "local MORE_KEYS = 1\nlocal a = ARGV[1]\nlocal MORE = 2\nreturn 1"
        );
        let full = with_prelude(
            "return {RANK.sent, history_with(false, '{}'), message_fields(KEYS[MORE_KEYS])}",
            &[],
            &[],
        );
        for part in [
            "local RANK = ",
            "local function history_with(",
            "local MESSAGE_FIELDS = ",
            "local function message_fields(",
        ] {
            assert!(full.contains(part), "{part} missing from {full}");
        }
        let sent = RecordSent::source();
        assert!(sent.contains("local RANK = ") && !sent.contains("message_fields"));
    }
}
