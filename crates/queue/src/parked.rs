//! Messages that must wait, parked in Redis with their due time instead of
//! in a worker's read-ahead, so that a recipient held back by the pair
//! limit or a retry's backoff never holds up the sender's other
//! recipients.
//!
//! A parked message stays where it is, in its stream, pending in the
//! consumer group; only its owner in the pending list changes, to the
//! reserved consumer [`PARKED_CONSUMER`], which no worker reads through. So
//! nothing is copied, a crash loses nothing, and a worker's own pending
//! entries stay exactly what it holds in memory. Beside the stream, per
//! sender and priority:
//!
//! - `gw:{pnid}:parked:t` (`:b` for bulk): sorted set, recipient by the
//!   time (Unix ms) their oldest parked message may go;
//! - `gw:{pnid}:parked:t:<recipient>`: sorted set of that recipient's
//!   parked entry ids, oldest first.
//!
//! Order: the worker keeps every message of a recipient that it holds in
//! memory older than every parked one of theirs. A message read for a
//! parked recipient is parked behind the others (in the same script as the
//! read), and unparking takes the oldest. Only the sender's lease holder
//! touches these keys, one step at a time.

use gateway_domain::Lane;
use redis::Value;
use redis::streams::StreamId;

use crate::consumer::stream_entries;
use crate::{Queue, QueueError, fields, keys, scripts};

/// The consumer that parked entries are pending for. No worker reads as it.
pub const PARKED_CONSUMER: &str = "_parked";

/// What is parked for one of a sender's streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParkedSummary {
    /// Recipients with parked messages.
    pub recipients: u64,
    /// When the first of them is due (Unix ms).
    pub next_due_ms: Option<i64>,
}

/// New entries read while recipients were parked.
#[derive(Debug, Default)]
pub struct RoutedRead {
    /// Entries for recipients that are not parked: the caller's now.
    pub entries: Vec<StreamId>,
    /// Entries parked behind their recipient's other messages.
    pub parked: usize,
    pub summary: ParkedSummary,
}

/// Parked messages taken back.
#[derive(Debug, Default)]
pub struct Unparked {
    pub entries: Vec<StreamId>,
    pub summary: ParkedSummary,
}

/// What to take back in one [`Queue::unpark`].
#[derive(Debug, Clone, Copy)]
pub struct UnparkLimits {
    /// Recipients due by then (Unix ms).
    pub due_by_ms: i64,
    /// At most this many messages in all.
    pub most: usize,
    /// At most this many of one recipient's.
    pub per_recipient: usize,
    /// A recipient with messages left is next due then (Unix ms).
    pub rest_due_ms: i64,
}

impl Queue {
    /// Parks `entry_ids` (held by the worker, or just read) of one
    /// recipient. `due_ms` = when the oldest may go; `None` keeps the
    /// recipient's own (the entries wait behind those already parked).
    pub async fn park(
        &self,
        phone_number_id: &str,
        lane: Lane,
        recipient: &str,
        entry_ids: &[&str],
        due_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<ParkedSummary, QueueError> {
        let mut invocation = scripts::Park {
            stream_key: keys::stream(phone_number_id, lane).into(),
            parked_key: keys::parked(phone_number_id, lane).into(),
            recipient_parked_key: keys::parked_recipient(phone_number_id, lane, recipient).into(),
            group: keys::CONSUMER_GROUP.into(),
            parked_consumer: PARKED_CONSUMER.into(),
            recipient: recipient.into(),
            due_ms: due_ms.map(|d| d.to_string()).unwrap_or_default().into(),
            now_ms: now_ms.into(),
        }
        .invocation();
        let reply: Value = invocation
            .arg(entry_ids)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut parts = array(reply)?.into_iter();
        summary(parts.next(), parts.next())
    }

    /// Up to `count` new entries for `consumer`; those for parked
    /// recipients are parked behind them instead of returned.
    pub async fn read_routed(
        &self,
        phone_number_id: &str,
        lane: Lane,
        consumer: &str,
        count: usize,
    ) -> Result<RoutedRead, QueueError> {
        let invocation = self.route_invocation(phone_number_id, lane, consumer, count, "read");
        let reply: Value = invocation.invoke_async(&mut self.conn.clone()).await?;
        let mut parts = array(reply)?.into_iter();
        let entries = stream_entries(parts.next().unwrap_or(Value::Nil))?;
        let parked = integer(parts.next())?;
        Ok(RoutedRead {
            entries,
            parked: usize::try_from(parked).unwrap_or(0),
            summary: summary(parts.next(), parts.next())?,
        })
    }

    /// Parks, of entries just taken over, those whose recipient has
    /// messages parked (they wait behind those, in order); returns the
    /// others.
    pub async fn route_taken(
        &self,
        phone_number_id: &str,
        lane: Lane,
        consumer: &str,
        entries: Vec<StreamId>,
    ) -> Result<(Vec<StreamId>, ParkedSummary), QueueError> {
        let mut invocation = self.route_invocation(phone_number_id, lane, consumer, 0, "given");
        for entry in &entries {
            let recipient: String = entry.get(fields::RECIPIENT).unwrap_or_default();
            invocation.arg(&entry.id).arg(recipient);
        }
        let reply: Value = invocation.invoke_async(&mut self.conn.clone()).await?;
        let mut parts = array(reply)?.into_iter();
        let parked: Vec<String> = redis::from_redis_value(parts.next().unwrap_or(Value::Nil))
            .map_err(|e| QueueError::Protocol(e.to_string()))?;
        let _count = parts.next();
        let summary = summary(parts.next(), parts.next())?;
        let kept = entries
            .into_iter()
            .filter(|entry| !parked.contains(&entry.id))
            .collect();
        Ok((kept, summary))
    }

    fn route_invocation(
        &self,
        phone_number_id: &str,
        lane: Lane,
        consumer: &str,
        count: usize,
        mode: &str,
    ) -> scripts::ScriptCall {
        scripts::Route {
            stream_key: keys::stream(phone_number_id, lane).into(),
            parked_key: keys::parked(phone_number_id, lane).into(),
            group: keys::CONSUMER_GROUP.into(),
            consumer: consumer.into(),
            count: count.into(),
            parked_consumer: PARKED_CONSUMER.into(),
            parked_prefix: keys::parked_recipient(phone_number_id, lane, "").into(),
            recipient_field: fields::RECIPIENT.into(),
            mode: mode.into(),
        }
        .invocation()
    }

    /// Takes back, for `consumer`, the oldest parked messages of the
    /// recipients due by `limits.due_by_ms`.
    pub async fn unpark(
        &self,
        phone_number_id: &str,
        lane: Lane,
        consumer: &str,
        limits: UnparkLimits,
    ) -> Result<Unparked, QueueError> {
        let reply: Value = scripts::Unpark {
            stream_key: keys::stream(phone_number_id, lane).into(),
            parked_key: keys::parked(phone_number_id, lane).into(),
            group: keys::CONSUMER_GROUP.into(),
            consumer: consumer.into(),
            due_by_ms: limits.due_by_ms.into(),
            most: limits.most.max(1).into(),
            most_per_recipient: limits.per_recipient.max(1).into(),
            left_due_ms: limits.rest_due_ms.into(),
            parked_prefix: keys::parked_recipient(phone_number_id, lane, "").into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        let mut parts = array(reply)?.into_iter();
        let entries = stream_entries(parts.next().unwrap_or(Value::Nil))?;
        Ok(Unparked {
            entries,
            summary: summary(parts.next(), parts.next())?,
        })
    }

    /// What is parked for the sender's stream of `lane`.
    pub async fn parked_summary(
        &self,
        phone_number_id: &str,
        lane: Lane,
    ) -> Result<ParkedSummary, QueueError> {
        let index = keys::parked(phone_number_id, lane);
        let (recipients, first): (u64, Vec<(String, i64)>) = redis::pipe()
            .cmd("ZCARD")
            .arg(&index)
            .cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(ParkedSummary {
            recipients,
            next_due_ms: first.first().map(|(_, due)| *due),
        })
    }
}

fn array(reply: Value) -> Result<Vec<Value>, QueueError> {
    match reply {
        Value::Array(parts) => Ok(parts),
        other => Err(QueueError::Protocol(format!("parked script: {other:?}"))),
    }
}

fn integer(value: Option<Value>) -> Result<i64, QueueError> {
    match value {
        Some(Value::Int(n)) => Ok(n),
        Some(other) => {
            redis::from_redis_value::<i64>(other).map_err(|e| QueueError::Protocol(e.to_string()))
        }
        None => Err(QueueError::Protocol("parked script: short reply".into())),
    }
}

/// `{recipients, earliest due or -1}` as the scripts return them.
fn summary(recipients: Option<Value>, due: Option<Value>) -> Result<ParkedSummary, QueueError> {
    let recipients = u64::try_from(integer(recipients)?).unwrap_or(0);
    Ok(ParkedSummary {
        recipients,
        next_due_ms: due.and_then(score_ms).filter(|_| recipients > 0),
    })
}

/// A sorted set's score as a script returns it (text), or -1 for none.
pub(crate) fn score_ms(value: Value) -> Option<i64> {
    let ms = match value {
        Value::Int(n) => n as f64,
        other => redis::from_redis_value::<String>(other)
            .ok()?
            .parse::<f64>()
            .ok()?,
    };
    (ms >= 0.0).then_some(ms as i64)
}
