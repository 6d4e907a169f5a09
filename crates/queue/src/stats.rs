//! Read-only figures for `gateway stats`: how far behind each sender is, who
//! drains it, why it is paused; and the queues shared by all senders (live
//! workers, webhook events, notifications). Nothing here writes.
//!
//! A sender's figures come from one pipeline over its own keys (one hash
//! tag, so one Cluster slot); the shared ones from another.

use redis::Value;
use redis::streams::StreamRangeReply;

use crate::{Queue, QueueError, keys};

/// One of a sender's two streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamDepth {
    /// Entries not yet done: waiting or in flight.
    pub length: u64,
    /// Entries a worker holds: read and not yet finished (being sent, or
    /// waiting a moment for their turn).
    pub in_flight: u64,
    /// Entries parked in Redis until their due time (a recipient's pair
    /// limit, a retry's backoff).
    pub parked: u64,
}

impl StreamDepth {
    /// Entries no worker has read yet.
    pub fn waiting(&self) -> u64 {
        self.length.saturating_sub(self.in_flight + self.parked)
    }
}

/// What Redis holds about one sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub transactional: StreamDepth,
    pub bulk: StreamDepth,
    /// When the oldest entry of either stream was queued (Unix ms).
    pub oldest_ms: Option<i64>,
    /// Messages held until their `send_after`.
    pub scheduled: u64,
    /// When the next of them is due (Unix ms).
    pub next_scheduled_ms: Option<i64>,
    pub dead_letters: u64,
    /// Distinct recipients sent to since the `since_ms` asked for: a lower
    /// bound of the messages sent then (a recipient counts once however
    /// many messages they got).
    pub recipients_since: u64,
    /// The worker holding the sender's lease, and whether that worker is
    /// alive (a lease lasts as long as its holder's liveness).
    pub owner: Option<String>,
    pub owner_alive: Option<bool>,
    /// Why the sender is paused (JSON, as stored); `None` when it is not.
    pub paused: Option<String>,
    /// The rate its owner keeps now, as published for admission control;
    /// `None` when no owner published one lately.
    pub published_rate: Option<u32>,
}

impl SenderStats {
    /// The load admission control judges by (`configured_rate` when no
    /// owner published one).
    pub fn load(&self, configured_rate: u32) -> gateway_domain::rules::admission::SenderLoad {
        crate::sender_load::load(
            self.transactional.length,
            self.bulk.length,
            self.published_rate,
            configured_rate,
        )
    }

    /// Entries not yet done in both streams.
    pub fn depth(&self) -> u64 {
        self.transactional.length + self.bulk.length
    }
}

/// The queues every sender shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedStats {
    /// Registered workers and their last heartbeat (Unix ms), newest first.
    /// A worker that died may linger until a live one prunes it.
    pub workers: Vec<(String, i64)>,
    /// Webhook bodies not yet processed (`gw:events`).
    pub webhook_events: u64,
    pub notifications_queued: u64,
    pub notifications_retrying: u64,
    pub notifications_dead: u64,
}

impl Queue {
    /// The sender's figures, in one round trip (and one more for the
    /// owner's liveness); `since_ms` bounds
    /// [`SenderStats::recipients_since`].
    pub async fn sender_stats(
        &self,
        phone_number_id: &str,
        since_ms: i64,
    ) -> Result<SenderStats, QueueError> {
        let streams = [keys::queue(phone_number_id), keys::bulk(phone_number_id)];
        let mut pipe = redis::pipe();
        // XPENDING fails (NOGROUP) for a sender no worker has seen yet.
        pipe.ignore_errors();
        for stream in &streams {
            pipe.cmd("XLEN")
                .arg(stream)
                .cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("XPENDING")
                .arg(stream)
                .arg(keys::CONSUMER_GROUP);
        }
        let scheduled = keys::scheduled(phone_number_id);
        let lease = keys::lease(phone_number_id);
        pipe.cmd("ZCARD")
            .arg(&scheduled)
            .cmd("ZRANGE")
            .arg(&scheduled)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .cmd("XLEN")
            .arg(keys::dead_letters(phone_number_id))
            .cmd("ZCOUNT")
            .arg(keys::recent_recipients(phone_number_id))
            .arg(since_ms)
            .arg("+inf")
            .cmd("GET")
            .arg(&lease)
            .cmd("GET")
            .arg(keys::paused(phone_number_id))
            .cmd("GET")
            .arg(keys::sender_rate(phone_number_id));
        let replies: Vec<redis::RedisResult<Value>> =
            pipe.query_async(&mut self.conn.clone()).await?;
        if replies.len() != 13 {
            return Err(QueueError::Protocol("stats pipeline reply count".into()));
        }
        let mut replies = replies.into_iter();
        // Every reply but XPENDING's must be a value.
        let mut next =
            || -> Result<Value, QueueError> { Ok(replies.next().unwrap_or(Ok(Value::Nil))?) };
        let mut depths = [StreamDepth::default(); 2];
        let mut oldest_ms = None;
        for depth in &mut depths {
            depth.length = parse(next()?)?;
            let first: StreamRangeReply = parse(next()?)?;
            let first_ms = first.ids.first().and_then(|e| entry_ms(&e.id));
            oldest_ms = match (oldest_ms, first_ms) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
            // The summary form: [count, smallest id, greatest id, [[consumer,
            // count], ...]]; an error when the stream or its group does not
            // exist yet.
            if let Ok(Value::Array(parts)) = next() {
                let mut parts = parts.into_iter();
                let pending: u64 = parts.next().map(parse).transpose()?.unwrap_or(0);
                let consumers: Vec<(String, u64)> = parts
                    .nth(2)
                    .map(parse::<Option<Vec<(String, u64)>>>)
                    .transpose()?
                    .flatten()
                    .unwrap_or_default();
                depth.parked = consumers
                    .iter()
                    .filter(|(consumer, _)| consumer == crate::PARKED_CONSUMER)
                    .map(|(_, count)| *count)
                    .sum();
                depth.in_flight = pending.saturating_sub(depth.parked);
            }
        }
        let scheduled: u64 = parse(next()?)?;
        let first_due: Vec<(String, f64)> = parse(next()?)?;
        let dead_letters: u64 = parse(next()?)?;
        let recipients_since: u64 = parse(next()?)?;
        let owner: Option<String> = parse(next()?)?;
        let paused: Option<String> = parse(next()?)?;
        let published_rate: Option<String> = parse(next()?)?;
        let owner_alive = match &owner {
            Some(worker) => Some(
                self.is_alive(worker, self.liveness_range(phone_number_id))
                    .await?,
            ),
            None => None,
        };
        let [transactional, bulk] = depths;
        Ok(SenderStats {
            transactional,
            bulk,
            oldest_ms,
            scheduled,
            next_scheduled_ms: first_due.first().map(|(_, due)| *due as i64),
            dead_letters,
            recipients_since,
            owner,
            owner_alive,
            paused,
            published_rate: published_rate
                .and_then(|r| r.parse().ok())
                .filter(|&r| r > 0),
        })
    }

    /// The workers' registry, the webhook events and the notification outbox.
    pub async fn shared_stats(&self) -> Result<SharedStats, QueueError> {
        let (workers, webhook_events, queued, retrying, dead): (
            Vec<(String, f64)>,
            u64,
            u64,
            u64,
            u64,
        ) = redis::pipe()
            .cmd("ZRANGE")
            .arg(keys::WORKERS)
            .arg(0)
            .arg(-1)
            .arg("REV")
            .arg("WITHSCORES")
            .cmd("XLEN")
            .arg(keys::EVENTS)
            .cmd("XLEN")
            .arg(keys::NOTIFY_OUTBOX)
            .cmd("ZCARD")
            .arg(keys::NOTIFY_RETRY)
            .cmd("XLEN")
            .arg(keys::NOTIFY_DEAD)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(SharedStats {
            workers: workers
                .into_iter()
                .map(|(worker, at)| (worker, at as i64))
                .collect(),
            webhook_events,
            notifications_queued: queued,
            notifications_retrying: retrying,
            notifications_dead: dead,
        })
    }
}

fn parse<T: redis::FromRedisValue>(value: Value) -> Result<T, QueueError> {
    redis::from_redis_value(value).map_err(|e| QueueError::Protocol(e.to_string()))
}

/// The Unix ms a stream entry id starts with.
fn entry_ms(entry_id: &str) -> Option<i64> {
    entry_id.split_once('-')?.0.parse().ok()
}
