//! The Redis side of notifications: where they wait, how a delivery's
//! outcome moves them, and the dead letters.
//!
//! Keys (one hash tag, `{notify}`, so a script may touch them together on
//! Redis Cluster):
//! - [`NOTIFY_OUTBOX`]: notifications to deliver, read through the consumer
//!   group [`CONSUMER_GROUP`]. An entry stays in the group's pending list
//!   while a worker holds it, so a crashed worker's entries are found again
//!   (`XAUTOCLAIM`) and delivered by another: at least once.
//! - [`NOTIFY_RETRY`]: failed deliveries waiting for their next attempt; score
//!   = due Unix ms, member = the notification as JSON with its attempts.
//! - [`NOTIFY_DEAD`]: deliveries given up on, with attempts and last error,
//!   trimmed to about [`DEAD_MAX_LEN`] entries.
//!
//! Entry fields: `url`, `signer` (the NAME of the secret to sign with, never
//! the secret), `body`, `attempts` (failed attempts so far), optionally
//! `last_error`. Every move between keys (outbox to retry, outbox to dead,
//! retry to outbox, dead to outbox) is one Lua script, so a crash leaves a
//! notification in exactly one place.
//!
//! What waits is bounded: [`Outbox::push`] stores a notification only while
//! fewer than `max_backlog` wait, counting the outbox stream (to deliver, or
//! in flight) and the retry set together, the measure of the
//! `gateway_notifications_pending` gauge. Over it the new notification is
//! dropped, counted (`gateway_notifications_dropped_total{reason="backlog"}`)
//! and logged, so receivers that stay down, or no worker delivering, cannot
//! fill Redis. The check runs in the push's own script. Moves between the
//! keys never drop: a retry promoted, a dead letter replayed (bounded by the
//! dead stream's own cap) goes back in even over the cap.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gateway_queue::keys::{NOTIFY_DEAD, NOTIFY_OUTBOX, NOTIFY_RETRY};
use gateway_queue::{Claim, Consumer, RedisConnection};
use gateway_telemetry::LogThrottle;
use prometheus::IntCounter;
use redis::streams::{StreamId, StreamRangeReply};
use redis::{Script, Value};
use serde::Serialize;

use crate::metrics::DROPPED_FOR_BACKLOG;
use crate::{Notification, NotifyError, NotifyMetrics};

/// The consumer group every delivery worker reads the outbox through.
pub const CONSUMER_GROUP: &str = "notifiers";
/// About how many dead letters are kept (`XADD MAXLEN ~`).
pub const DEAD_MAX_LEN: u64 = 100_000;
/// How many notifications may wait when [`Outbox::with_max_backlog`] does
/// not say otherwise: the default of `notify.max_backlog`.
pub const DEFAULT_MAX_BACKLOG: u64 = 1_000_000;
/// At most one warning about dropped notifications per this long.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

mod field {
    pub(super) const URL: &str = "url";
    pub(super) const SIGNER: &str = "signer";
    pub(super) const BODY: &str = "body";
    pub(super) const ATTEMPTS: &str = "attempts";
    pub(super) const LAST_ERROR: &str = "last_error";
}

static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/push.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/retry.lua")));
static DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/dead.lua")));
static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/promote.lua")));
static REPLAY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/replay.lua")));

/// Dead letters re-queued per script call by [`Outbox::replay_dead`], so
/// one call holds Redis only briefly.
const REPLAY_BATCH: usize = 256;

/// The notification outbox in Redis. Cheap to clone (the connection is
/// multiplexed); no command on it blocks.
#[derive(Clone)]
pub struct Outbox {
    conn: RedisConnection,
    /// Notifications that may wait before a new one is dropped.
    max_backlog: u64,
    /// Counts the dropped; set by [`Outbox::with_max_backlog`].
    dropped: Option<IntCounter>,
    /// Shared by the clones: one process, one warning per interval.
    drop_warnings: Arc<LogThrottle>,
}

/// A notification given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadNotification {
    /// The dead stream entry id, for [`Replay::Ids`].
    pub id: String,
    /// When it was given up on (Unix ms, from the entry id).
    pub dead_at_ms: i64,
    pub notification: Notification,
    /// Attempts made before giving up (0 if it was never tried, e.g. an
    /// unknown signer).
    pub attempts: u32,
    pub last_error: String,
}

/// Which dead letters [`Outbox::replay_dead`] re-queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every dead letter that exists when the replay starts.
    All,
    /// These dead stream entry ids; unknown or malformed ids are skipped.
    Ids(Vec<String>),
}

/// How many notifications are in each place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// In the outbox stream: waiting or in flight.
    pub queued: u64,
    /// In the retry set.
    pub retrying: u64,
    /// In the dead stream.
    pub dead: u64,
}

/// An outbox entry handed to a delivery worker.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) entry_id: String,
    pub(crate) notification: Notification,
    /// Failed attempts before this one.
    pub(crate) attempts: u32,
}

/// An outbox entry this code did not write; it is moved to the dead stream
/// with what it has, so it neither blocks nor vanishes.
#[derive(Debug, Clone)]
pub(crate) struct Malformed {
    pub(crate) entry_id: String,
    pub(crate) notification: Notification,
    pub(crate) problem: String,
}

/// What one promotion of due retries did and found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Promoted {
    /// Retries moved back into the stream.
    pub(crate) moved: u64,
    /// Members dropped as malformed.
    pub(crate) dropped: u64,
    /// When the earliest retry still waiting is due (Unix ms); `None` when
    /// the retry set is empty.
    pub(crate) next_due_ms: Option<i64>,
    /// The stream's length afterwards (waiting or in flight).
    pub(crate) queued: u64,
    /// The retry set's size afterwards.
    pub(crate) retrying: u64,
}

/// The retry set's member: the notification, its attempts, and the id of
/// the entry that failed, which makes every member unique (two equal
/// notifications failing alike must not collapse into one).
#[derive(Serialize)]
struct RetryMember<'a> {
    id: &'a str,
    url: &'a str,
    signer: &'a str,
    body: &'a str,
    attempts: u32,
    last_error: &'a str,
}

impl Outbox {
    /// On the process's connection (`Queue::connection`), to one server or
    /// a cluster; a `ConnectionManager` converts into it. At most
    /// [`DEFAULT_MAX_BACKLOG`] notifications wait, and drops are logged but
    /// not counted, unless [`Outbox::with_max_backlog`] says otherwise.
    pub fn new(conn: impl Into<RedisConnection>) -> Self {
        Self {
            conn: conn.into(),
            max_backlog: DEFAULT_MAX_BACKLOG,
            dropped: None,
            drop_warnings: Arc::new(LogThrottle::new(DROP_WARNING_EVERY)),
        }
    }

    /// At most `max_backlog` notifications wait (`notify.max_backlog`);
    /// the ones dropped over it are counted in `metrics`.
    pub fn with_max_backlog(self, max_backlog: u64, metrics: &NotifyMetrics) -> Self {
        Self {
            max_backlog,
            dropped: Some(metrics.dropped.with_label_values(&[DROPPED_FOR_BACKLOG])),
            ..self
        }
    }

    /// At most `max_backlog` notifications wait; drops are logged, not
    /// counted (for a process that does not export the notify metrics: the
    /// api, the CLI).
    pub fn capped(self, max_backlog: u64) -> Self {
        Self {
            max_backlog,
            ..self
        }
    }

    /// Queues a notification for delivery (one script call). Once this
    /// returns `Ok`, Redis holds it, unless `max_backlog` notifications
    /// were waiting already: then it is dropped, counted and logged, and
    /// still `Ok`, since the event that caused it was handled and must not
    /// be processed again for a receiver that is down.
    pub async fn push(&self, n: &Notification) -> Result<(), NotifyError> {
        let queued: i64 = PUSH
            .key(NOTIFY_OUTBOX)
            .key(NOTIFY_RETRY)
            .arg(self.max_backlog)
            .arg(field::URL)
            .arg(&n.url)
            .arg(field::SIGNER)
            .arg(&n.signer)
            .arg(field::BODY)
            .arg(&n.body)
            .arg(field::ATTEMPTS)
            .arg(0)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if queued == 0 {
            if let Some(dropped) = &self.dropped {
                dropped.inc();
            }
            if let Some(also_dropped) = self.drop_warnings.admit() {
                // The signer names the receiver; its URL may carry a token.
                tracing::warn!(
                    max_backlog = self.max_backlog,
                    also_dropped,
                    signer = %n.signer,
                    "the notification backlog is full (receivers down, or no worker \
                     delivering?): dropping new notifications until it drains"
                );
            }
        }
        Ok(())
    }

    /// Up to `count` dead letters, oldest first.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadNotification>, NotifyError> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(NOTIFY_DEAD)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply.ids.iter().map(dead_from_entry).collect())
    }

    /// Puts dead letters back into the outbox with attempts reset to 0;
    /// returns how many. [`Replay::All`] takes the ones that exist when it
    /// starts, so letters that die again meanwhile are not replayed in a loop.
    pub async fn replay_dead(&self, which: Replay) -> Result<usize, NotifyError> {
        match which {
            Replay::Ids(ids) => {
                let ids: Vec<String> = ids.into_iter().filter(|id| is_entry_id(id)).collect();
                let mut replayed = 0;
                for chunk in ids.chunks(REPLAY_BATCH) {
                    replayed += self.replay_ids(chunk).await?;
                }
                Ok(replayed)
            }
            Replay::All => {
                let last: StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(NOTIFY_DEAD)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut self.conn.clone())
                    .await?;
                let Some(last) = last.ids.first().map(|e| e.id.clone()) else {
                    return Ok(0);
                };
                let mut start = "-".to_owned();
                let mut replayed = 0;
                loop {
                    let page: StreamRangeReply = redis::cmd("XRANGE")
                        .arg(NOTIFY_DEAD)
                        .arg(&start)
                        .arg(&last)
                        .arg("COUNT")
                        .arg(REPLAY_BATCH)
                        .query_async(&mut self.conn.clone())
                        .await?;
                    let ids: Vec<String> = page.ids.iter().map(|e| e.id.clone()).collect();
                    let Some(page_last) = ids.last() else { break };
                    // Exclusive start: entries the script skipped stay behind us.
                    start = format!("({page_last}");
                    replayed += self.replay_ids(&ids).await?;
                    if ids.len() < REPLAY_BATCH {
                        break;
                    }
                }
                Ok(replayed)
            }
        }
    }

    /// How many notifications are queued, retrying and dead.
    pub async fn depth(&self) -> Result<OutboxDepth, NotifyError> {
        let (queued, retrying, dead): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(NOTIFY_OUTBOX)
            .cmd("ZCARD")
            .arg(NOTIFY_RETRY)
            .cmd("XLEN")
            .arg(NOTIFY_DEAD)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(OutboxDepth {
            queued,
            retrying,
            dead,
        })
    }

    async fn replay_ids(&self, ids: &[String]) -> Result<usize, NotifyError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut call = REPLAY.prepare_invoke();
        call.key(NOTIFY_DEAD).key(NOTIFY_OUTBOX);
        for id in ids {
            call.arg(id);
        }
        let replayed: usize = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(replayed)
    }

    /// A reader of the outbox through [`CONSUMER_GROUP`] as `name`; it
    /// creates the group (reading from the start, so notifications pushed
    /// before any worker ran are read) when it first needs it.
    pub(crate) fn consumer(&self, name: &str, claim: Claim) -> Consumer {
        Consumer::new(
            self.conn.clone(),
            NOTIFY_OUTBOX,
            CONSUMER_GROUP,
            name,
            claim,
        )
    }

    /// The delivery succeeded: the entry leaves the group and the stream.
    pub(crate) async fn delivered(&self, entry_id: &str) -> Result<(), NotifyError> {
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(NOTIFY_OUTBOX)
            .arg(CONSUMER_GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(NOTIFY_OUTBOX)
            .arg(entry_id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The delivery failed and is tried again at `due_ms`: one script moves
    /// it from the stream to the retry set. `attempts` counts this failure.
    pub(crate) async fn retry_at(
        &self,
        pending: &Pending,
        attempts: u32,
        due_ms: i64,
        last_error: &str,
    ) -> Result<(), NotifyError> {
        let n = &pending.notification;
        let member = serde_json::to_string(&RetryMember {
            id: &pending.entry_id,
            url: &n.url,
            signer: &n.signer,
            body: &n.body,
            attempts,
            last_error,
        })
        .map_err(|e| NotifyError::Protocol(format!("retry member: {e}")))?;
        RETRY
            .key(NOTIFY_OUTBOX)
            .key(NOTIFY_RETRY)
            .arg(CONSUMER_GROUP)
            .arg(&pending.entry_id)
            .arg(due_ms)
            .arg(member)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Gives up on an entry: one script moves it from the stream to the
    /// dead stream with its attempts and `last_error`.
    pub(crate) async fn bury(
        &self,
        entry_id: &str,
        n: &Notification,
        attempts: u32,
        last_error: &str,
    ) -> Result<(), NotifyError> {
        DEAD.key(NOTIFY_OUTBOX)
            .key(NOTIFY_DEAD)
            .arg(CONSUMER_GROUP)
            .arg(entry_id)
            .arg(DEAD_MAX_LEN)
            .arg(field::URL)
            .arg(&n.url)
            .arg(field::SIGNER)
            .arg(&n.signer)
            .arg(field::BODY)
            .arg(&n.body)
            .arg(field::ATTEMPTS)
            .arg(attempts)
            .arg(field::LAST_ERROR)
            .arg(last_error)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Moves up to `limit` retries due by `now_ms` back into the stream.
    pub(crate) async fn promote_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Promoted, NotifyError> {
        let (moved, dropped, next_due, queued, retrying): (u64, u64, Value, u64, u64) = PROMOTE
            .key(NOTIFY_RETRY)
            .key(NOTIFY_OUTBOX)
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Promoted {
            moved,
            dropped,
            next_due_ms: score_ms(next_due)?,
            queued,
            retrying,
        })
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("stream", &NOTIFY_OUTBOX)
            .field("max_backlog", &self.max_backlog)
            .finish_non_exhaustive()
    }
}

fn text(entry: &StreamId, name: &str) -> Option<String> {
    match entry.map.get(name)? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// An outbox entry as read (new or claimed): the notification to deliver,
/// or what is wrong with it.
pub(crate) fn pending_from_entry(entry: &StreamId) -> Result<Pending, Malformed> {
    let url = text(entry, field::URL);
    let signer = text(entry, field::SIGNER);
    let body = text(entry, field::BODY);
    let attempts = text(entry, field::ATTEMPTS).and_then(|a| a.parse::<u32>().ok());
    match (url, signer, body, attempts) {
        (Some(url), Some(signer), Some(body), Some(attempts)) => Ok(Pending {
            entry_id: entry.id.clone(),
            notification: Notification { url, signer, body },
            attempts,
        }),
        (url, signer, body, attempts) => {
            let missing: Vec<&str> = [
                (field::URL, url.is_none()),
                (field::SIGNER, signer.is_none()),
                (field::BODY, body.is_none()),
                (field::ATTEMPTS, attempts.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            Err(Malformed {
                entry_id: entry.id.clone(),
                notification: Notification {
                    url: url.unwrap_or_default(),
                    signer: signer.unwrap_or_default(),
                    body: body.unwrap_or_default(),
                },
                problem: format!(
                    "malformed outbox entry: missing or invalid {}",
                    missing.join(", ")
                ),
            })
        }
    }
}

/// A sorted set score as a script returns it (text, since scripts speak
/// RESP2), or -1 for none.
fn score_ms(value: Value) -> Result<Option<i64>, NotifyError> {
    let ms = match value {
        Value::Int(n) => n as f64,
        Value::Double(n) => n,
        other => redis::from_redis_value::<String>(other)
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or_else(|| NotifyError::Protocol("promote: the next due score".into()))?,
    };
    Ok((ms >= 0.0).then_some(ms as i64))
}

fn dead_from_entry(entry: &StreamId) -> DeadNotification {
    DeadNotification {
        id: entry.id.clone(),
        dead_at_ms: entry
            .id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or_default(),
        notification: Notification {
            url: text(entry, field::URL).unwrap_or_default(),
            signer: text(entry, field::SIGNER).unwrap_or_default(),
            body: text(entry, field::BODY).unwrap_or_default(),
        },
        attempts: text(entry, field::ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or_default(),
        last_error: text(entry, field::LAST_ERROR).unwrap_or_default(),
    }
}

/// `<ms>-<seq>`: what XRANGE accepts as an exact id; anything else would
/// make the replay script fail for every id in its batch.
fn is_entry_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.bytes().all(|b| b.is_ascii_digit())
            && seq.bytes().all(|b| b.is_ascii_digit())
            && ms.parse::<u64>().is_ok()
            && seq.parse::<u64>().is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_checked_before_they_reach_a_script() {
        assert!(is_entry_id("1700000000000-0"));
        assert!(is_entry_id("1-42"));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "1-2-3",
            "a-1",
            "+",
            "(1-0",
            "99999999999999999999-0",
        ] {
            assert!(!is_entry_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn retry_members_differ_for_equal_notifications_failing_alike() {
        let member = |id| {
            serde_json::to_string(&RetryMember {
                id,
                url: "http://127.0.0.1/hook",
                signer: "subscriber:crm",
                body: "{}",
                attempts: 1,
                last_error: "HTTP 503",
            })
            .expect("json")
        };
        assert_ne!(member("1-0"), member("1-1"));
    }

    #[test]
    fn the_next_due_score_is_read_as_scripts_return_it() {
        let text = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        assert_eq!(
            score_ms(text("1700000000123")).ok(),
            Some(Some(1_700_000_000_123))
        );
        assert_eq!(score_ms(text("1.7e12")).ok(), Some(Some(1_700_000_000_000)));
        assert_eq!(score_ms(Value::Int(-1)).ok(), Some(None));
        assert_eq!(score_ms(Value::Int(42)).ok(), Some(Some(42)));
        assert!(score_ms(text("soon")).is_err());
    }

    #[test]
    fn keys_share_one_hash_tag() {
        for key in [NOTIFY_OUTBOX, NOTIFY_RETRY, NOTIFY_DEAD] {
            assert!(key.contains("{notify}"), "{key}");
        }
    }
}
