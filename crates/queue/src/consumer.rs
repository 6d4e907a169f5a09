//! The one consumer-group reader every stream the workers drain goes
//! through: a sender's two queues, the webhook events and the notification
//! outbox. It reads new entries, takes over entries a gone consumer left,
//! and puts right what a failed read may have left behind.
//!
//! - **New entries**: `XREADGROUP ... >`, never blocking (the connection is
//!   shared); the owner waits for a wake-up ([`crate::KeyWatcher`]) once a
//!   read comes back short ([`Consumer::caught_up`]).
//! - **Taking over** ([`Claim`]): a sender's stream has one reader at a
//!   time (the lease holder), which on starting takes every entry pending
//!   for anyone else except the reserved consumers (parked messages); a
//!   shared stream has competing readers, and an entry pending for another
//!   longer than `min_idle` belongs to one that died.
//! - **Lost reads**: when a read (or a step of the caller's built on one)
//!   fails, Redis may still have carried it out, leaving entries pending
//!   for this consumer that it never saw. The next step is then a
//!   reconciliation: this consumer's pending entries that the caller does
//!   not hold are claimed again and handed out. A second one follows after
//!   [`RECHECK_AFTER`], for a read that was still on its way when the
//!   first ran.
//!
//! After each complete scan the names of gone consumers that hold nothing
//! are deleted from the group, so that rollouts do not pile them up.
//!
//! A cursor (the claim scan's position) moves only after the step that
//! returned its entries succeeded, so a failed step is repeated, not
//! skipped.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::Value;
use redis::streams::StreamId;

use crate::{QueueError, RedisConnection};

/// After a failed read, the pending list is reconciled at once and again
/// this much later: long enough for a command stuck in a dead connection
/// or a busy server to have run, or never to.
pub const RECHECK_AFTER: Duration = Duration::from_secs(3);

/// Pending entries looked at per `XPENDING` page.
const PENDING_PAGE: usize = 500;

/// On a shared stream, a consumer that holds nothing and has not read for
/// this long belongs to a worker that is gone.
pub const GONE_AFTER: Duration = Duration::from_secs(3_600);

/// How a consumer finds entries that others left.
#[derive(Debug, Clone)]
pub enum Claim {
    /// This consumer drains the stream alone (it holds the stream's
    /// lease): it starts by taking every entry pending for any other
    /// consumer but `reserved`.
    Takeover { reserved: &'static [&'static str] },
    /// Consumers compete: an entry another consumer has held for
    /// `min_idle` is taken, looked for every `every`.
    Stale { min_idle: Duration, every: Duration },
}

/// A reader of one stream through one consumer group.
pub struct Consumer {
    conn: RedisConnection,
    stream: String,
    group: String,
    name: String,
    claim: Claim,
    group_ready: bool,
    /// Where the takeover or stale-entry scan goes on (`None` = not
    /// scanning now).
    claim_cursor: Option<String>,
    next_stale_scan: Instant,
    /// Reconcile at or after these times.
    reconcile_at: Vec<Instant>,
    caught_up: bool,
}

impl Consumer {
    pub fn new(
        conn: RedisConnection,
        stream: impl Into<String>,
        group: impl Into<String>,
        name: impl Into<String>,
        claim: Claim,
    ) -> Self {
        let start = match &claim {
            Claim::Takeover { .. } => Some("-".to_owned()),
            Claim::Stale { .. } => None,
        };
        Self {
            conn,
            stream: stream.into(),
            group: group.into(),
            name: name.into(),
            claim,
            group_ready: false,
            claim_cursor: start,
            // A worker starting may be replacing one that crashed.
            next_stale_scan: Instant::now(),
            reconcile_at: Vec::new(),
            caught_up: false,
        }
    }

    /// Whether the next claim step takes over another consumer's entries
    /// (as opposed to reconciling this one's own).
    pub fn is_taking_over(&self) -> bool {
        matches!(self.claim, Claim::Takeover { .. }) && self.claim_cursor.is_some()
    }

    /// The last read found fewer entries than it asked for: nothing more
    /// until the stream changes.
    pub fn caught_up(&self) -> bool {
        self.caught_up && !self.has_claims_due(Instant::now())
    }

    /// The stream may have new entries (a wake-up).
    pub fn woken(&mut self) {
        self.caught_up = false;
    }

    /// A step built on this consumer's entries failed in a way that may
    /// have left entries pending for it that it does not hold.
    pub fn mark_uncertain(&mut self) {
        let now = Instant::now();
        self.reconcile_at = vec![now, now + RECHECK_AFTER];
        self.caught_up = false;
    }

    /// When this consumer next has work of its own (a reconciliation or a
    /// stale-entry scan), for the caller's timer.
    pub fn next_due(&self) -> Option<Instant> {
        let scan = matches!(self.claim, Claim::Stale { .. }).then_some(self.next_stale_scan);
        self.reconcile_at.iter().copied().chain(scan).min()
    }

    /// Whether a claim or a reconciliation is due.
    pub fn has_claims_due(&self, now: Instant) -> bool {
        self.claim_cursor.is_some()
            || self.reconcile_at.first().is_some_and(|at| *at <= now)
            || matches!(self.claim, Claim::Stale { .. }) && self.next_stale_scan <= now
    }

    /// The next entries: taken over or reconciled ones while any are due,
    /// then new ones. `held` = entries the caller holds (read and not
    /// finished), which are never handed out twice.
    pub async fn next(
        &mut self,
        count: usize,
        held: &HashSet<String>,
    ) -> Result<Vec<StreamId>, QueueError> {
        if let Some(claimed) = self.claim_due(count, held).await? {
            return Ok(claimed);
        }
        self.read_new(count).await
    }

    /// A due claim step (takeover, stale entries, reconciliation), if one is
    /// due; `None` when nothing is.
    pub async fn claim_due(
        &mut self,
        count: usize,
        held: &HashSet<String>,
    ) -> Result<Option<Vec<StreamId>>, QueueError> {
        let now = Instant::now();
        if !self.has_claims_due(now) {
            return Ok(None);
        }
        self.ensure_group().await?;
        let result = self.claim_step(count.max(1), held, now).await;
        if let Err(error) = &result {
            self.failed(error);
        }
        result.map(Some)
    }

    async fn claim_step(
        &mut self,
        count: usize,
        held: &HashSet<String>,
        now: Instant,
    ) -> Result<Vec<StreamId>, QueueError> {
        if let Some(cursor) = self.claim_cursor.clone() {
            let (entries, next) = match self.claim.clone() {
                // This consumer's own unheld entries too: a reader that had
                // the stream before, in this same process, left them.
                Claim::Takeover { reserved } => {
                    self.claim_pending(&cursor, count, None, |id, consumer| {
                        !held.contains(id) && !reserved.contains(&consumer)
                    })
                    .await?
                }
                Claim::Stale { min_idle, .. } => self.claim_stale(&cursor, min_idle, count).await?,
            };
            self.claim_cursor = next;
            if self.claim_cursor.is_none() {
                // The scan is complete: what gone consumers held is this
                // one's now, and their names can go.
                self.forget_gone_consumers().await;
                if let Claim::Stale { every, .. } = self.claim {
                    self.next_stale_scan = now + every;
                }
            }
            return Ok(entries);
        }
        if matches!(self.claim, Claim::Stale { .. }) && self.next_stale_scan <= now {
            self.claim_cursor = Some("0-0".to_owned());
            return Box::pin(self.claim_step(count, held, now)).await;
        }
        // A reconciliation: this consumer's own entries it does not hold.
        let name = self.name.clone();
        let mut cursor = "-".to_owned();
        loop {
            let (entries, next) = self
                .claim_pending(&cursor, count, Some(&name), |id, _| !held.contains(id))
                .await?;
            if !entries.is_empty() {
                tracing::warn!(
                    stream = %self.stream,
                    count = entries.len(),
                    "entries read but never received: taking them again"
                );
                return Ok(entries);
            }
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        self.reconcile_at.retain(|at| *at > now);
        Ok(Vec::new())
    }

    /// Deletes the group's consumers that hold nothing and belong to no
    /// live reader, so that rollouts do not pile names up: on a stream read
    /// by one owner at a time every other name is a past owner's; on a
    /// shared stream, a name idle for [`GONE_AFTER`]. Best effort: a failure
    /// changes nothing and is tried at the next scan.
    async fn forget_gone_consumers(&self) {
        let consumers: redis::RedisResult<redis::streams::StreamInfoConsumersReply> =
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&self.stream)
                .arg(&self.group)
                .query_async(&mut self.conn.clone())
                .await;
        let Ok(consumers) = consumers else {
            return;
        };
        let reserved: &[&str] = match &self.claim {
            Claim::Takeover { reserved } => reserved,
            Claim::Stale { .. } => &[],
        };
        let gone_after = GONE_AFTER.as_millis();
        for consumer in consumers.consumers {
            let idle_long = u128::try_from(consumer.idle).unwrap_or(u128::MAX) >= gone_after;
            let gone = match self.claim {
                Claim::Takeover { .. } => true,
                Claim::Stale { .. } => idle_long,
            };
            if consumer.pending == 0
                && gone
                && consumer.name != self.name
                && !reserved.contains(&consumer.name.as_str())
            {
                let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&consumer.name)
                    .query_async(&mut self.conn.clone())
                    .await;
            }
        }
    }

    /// Claims pending entries from `start` on that `wanted` accepts, up
    /// to `count`; returns them and where to go on (`None`: the scan is
    /// complete).
    async fn claim_pending(
        &self,
        start: &str,
        count: usize,
        consumer: Option<&str>,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Result<(Vec<StreamId>, Option<String>), QueueError> {
        let mut xpending = redis::cmd("XPENDING");
        xpending
            .arg(&self.stream)
            .arg(&self.group)
            .arg(start)
            .arg("+")
            .arg(PENDING_PAGE);
        if let Some(consumer) = consumer {
            xpending.arg(consumer);
        }
        let pending: redis::streams::StreamPendingCountReply =
            xpending.query_async(&mut self.conn.clone()).await?;
        let complete = pending.ids.len() < PENDING_PAGE;
        let mut ids = Vec::new();
        let mut last = None;
        for entry in &pending.ids {
            last = Some(entry.id.clone());
            if wanted(&entry.id, &entry.consumer) {
                ids.push(entry.id.clone());
                if ids.len() >= count {
                    break;
                }
            }
        }
        let stopped_early =
            ids.len() >= count && last.as_ref() != pending.ids.last().map(|e| &e.id);
        let next = if complete && !stopped_early {
            None
        } else {
            last.map(|id| format!("({id}"))
        };
        if ids.is_empty() {
            return Ok((Vec::new(), next));
        }
        let reply: Value = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(0)
            .arg(&ids)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((stream_entries(reply)?, next))
    }

    async fn claim_stale(
        &self,
        cursor: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<(Vec<StreamId>, Option<String>), QueueError> {
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        if !reply.claimed.is_empty() {
            tracing::info!(stream = %self.stream, count = reply.claimed.len(), "took over entries a gone consumer held");
        }
        let next = (reply.next_stream_id != "0-0").then_some(reply.next_stream_id);
        Ok((reply.claimed, next))
    }

    /// Up to `count` new entries, without waiting.
    pub async fn read_new(&mut self, count: usize) -> Result<Vec<StreamId>, QueueError> {
        self.ensure_group().await?;
        let reply: redis::RedisResult<Value> = self
            .read_command(count)
            .query_async(&mut self.conn.clone())
            .await;
        match reply.map_err(QueueError::from) {
            Ok(reply) => self.read_reply(reply, count),
            Err(error) => {
                self.failed(&error);
                Err(error)
            }
        }
    }

    /// The read of up to `count` new entries, for a caller that sends it
    /// itself (after arming the stream's wake-up, on the same connection);
    /// its reply goes to [`Consumer::read_reply`].
    pub fn read_command(&self, count: usize) -> redis::Cmd {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">");
        read
    }

    /// The entries of a reply to [`Consumer::read_command`] of `count`.
    pub fn read_reply(&mut self, reply: Value, count: usize) -> Result<Vec<StreamId>, QueueError> {
        let entries = match read_entries(reply) {
            Ok(entries) => entries,
            Err(error) => {
                self.failed(&error);
                return Err(error);
            }
        };
        self.note_read(entries.len(), count);
        Ok(entries)
    }

    /// How many entries are pending for each consumer (`XPENDING`'s
    /// summary), for a caller that sends it itself right before a read;
    /// its reply goes to [`Consumer::check_pending`].
    pub fn pending_command(&self) -> redis::Cmd {
        redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .to_owned()
    }

    /// Compares what [`Consumer::pending_command`] found pending for this
    /// consumer with the `held` entries the caller holds: more pending than
    /// held means a read whose answer never arrived (a cluster client
    /// resends a command whose connection broke, and the resent read finds
    /// nothing new), and a reconciliation is due.
    pub fn check_pending(&mut self, reply: &Value, held: usize) {
        let pending = pending_for(reply, &self.name);
        if pending > held {
            tracing::warn!(
                stream = %self.stream,
                pending,
                held,
                "more entries pending than held: a read was lost"
            );
            self.mark_uncertain();
        }
    }

    /// A read of `asked` entries (made here or by the caller's own read
    /// command) returned `got`.
    pub fn note_read(&mut self, got: usize, asked: usize) {
        self.caught_up = got < asked;
    }

    /// A step failed: the group may be gone (Redis restarted empty), and
    /// the step may have run without its answer arriving.
    pub fn failed(&mut self, error: &QueueError) {
        if let QueueError::Redis(e) = error
            && e.code() == Some("NOGROUP")
        {
            self.group_ready = false;
        }
        self.mark_uncertain();
    }

    /// Creates the stream and its group if they do not exist yet, reading
    /// from the start, so entries added before the first reader came are
    /// read too.
    pub async fn ensure_group(&mut self) -> Result<(), QueueError> {
        if self.group_ready {
            return Ok(());
        }
        create_group(&self.conn, &self.stream, &self.group).await?;
        self.group_ready = true;
        Ok(())
    }
}

/// Creates `stream` and `group` on it, reading from the start; a group that
/// exists already is left as it is.
pub(crate) async fn create_group(
    conn: &RedisConnection,
    stream: &str,
    group: &str,
) -> Result<(), QueueError> {
    let result: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn.clone())
        .await;
    match result {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => Ok(other?),
    }
}

/// `consumer`'s count in an `XPENDING` summary (`[count, first, last,
/// [[consumer, count], ...]]`); 0 when it has none or the reply is not one.
fn pending_for(reply: &Value, consumer: &str) -> usize {
    let Value::Array(summary) = reply else {
        return 0;
    };
    let Some(Value::Array(consumers)) = summary.get(3) else {
        return 0;
    };
    consumers
        .iter()
        .find_map(|pair| {
            let Value::Array(pair) = pair else {
                return None;
            };
            let name = redis::from_redis_value_ref::<String>(pair.first()?).ok()?;
            (name == consumer).then(|| redis::from_redis_value_ref::<usize>(pair.get(1)?).ok())?
        })
        .unwrap_or(0)
}

/// The entries of an `XREADGROUP` reply for one stream: `[[stream,
/// [entries]]]` (RESP2), `{stream: [entries]}` (RESP3), or nil when there
/// are none. Parsed in place: redis-rs's own reply type clones the whole
/// reply for each shape it tries.
fn read_entries(reply: Value) -> Result<Vec<StreamId>, QueueError> {
    let entries = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams.into_iter().next().and_then(|stream| match stream {
            Value::Array(mut parts) if parts.len() == 2 => parts.pop(),
            _ => None,
        }),
        Value::Map(streams) => streams.into_iter().next().map(|(_, entries)| entries),
        other => return Err(QueueError::Protocol(format!("stream read: {other:?}"))),
    };
    stream_entries(entries.unwrap_or(Value::Nil))
}

/// The entries of an `XCLAIM` or `XRANGE`-shaped reply (`[[id, [field,
/// value, ...]], ...]`); entries deleted meanwhile (nil) are left out.
pub(crate) fn stream_entries(reply: Value) -> Result<Vec<StreamId>, QueueError> {
    let protocol = |e: redis::ParsingError| QueueError::Protocol(e.to_string());
    let Value::Array(rows) = reply else {
        return match reply {
            Value::Nil => Ok(Vec::new()),
            other => Err(QueueError::Protocol(format!("stream entries: {other:?}"))),
        };
    };
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let Value::Array(mut parts) = row else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let id: String =
            redis::from_redis_value(parts.pop().unwrap_or(Value::Nil)).map_err(protocol)?;
        if matches!(fields, Value::Nil) {
            continue;
        }
        entries.push(StreamId {
            id,
            map: redis::from_redis_value(fields).map_err(protocol)?,
            ..StreamId::default()
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_read_reply_is_parsed_in_either_protocol() {
        let entries = || {
            Value::Array(vec![Value::Array(vec![
                bulk("7-1"),
                Value::Array(vec![bulk("rcpt"), bulk("+1")]),
            ])])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), entries()])]);
        let resp3 = Value::Map(vec![(bulk("s"), entries())]);
        for reply in [resp2, resp3] {
            let read = read_entries(reply).expect("entries");
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].id, "7-1");
            assert_eq!(read[0].get::<String>("rcpt").as_deref(), Some("+1"));
        }
        assert!(read_entries(Value::Nil).expect("none").is_empty());
        assert!(read_entries(Value::Int(1)).is_err());
    }

    #[test]
    fn a_consumers_pending_count_is_read_from_the_summary() {
        let summary = Value::Array(vec![
            Value::Int(5),
            bulk("1-0"),
            bulk("9-0"),
            Value::Array(vec![
                Value::Array(vec![bulk("_parked"), bulk("2")]),
                Value::Array(vec![bulk("w1"), bulk("3")]),
            ]),
        ]);
        assert_eq!(pending_for(&summary, "w1"), 3);
        assert_eq!(pending_for(&summary, "w2"), 0);
        let empty = Value::Array(vec![Value::Int(0), Value::Nil, Value::Nil, Value::Nil]);
        assert_eq!(pending_for(&empty, "w1"), 0);
        assert_eq!(pending_for(&Value::Nil, "w1"), 0);
    }

    #[test]
    fn claimed_entries_are_read_and_deleted_ones_skipped() {
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("a"), bulk("1")])]),
            Value::Nil,
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let entries = stream_entries(reply).expect("entries");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(entries[0].get::<String>("a").as_deref(), Some("1"));
        assert!(stream_entries(Value::Nil).expect("nil").is_empty());
    }
}
