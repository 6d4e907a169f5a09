//! The webhook events stream: bodies the api received from Meta with a valid
//! signature, stored as they came (the raw bytes, so nothing is lost to a
//! re-serialisation), and processed behind the api's 200 by the workers
//! through the `workers` consumer group. An event leaves the stream only
//! once processed; a worker that dies leaves it pending, and another claims
//! it after `min_idle`.

use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use crate::{Queue, QueueError, keys};

const BODY: &str = "body";
const RECEIVED: &str = "at";

/// A stored webhook body.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub entry_id: String,
    pub body: Vec<u8>,
    /// When the api received it (Unix ms).
    pub received_ms: i64,
}

impl Queue {
    /// Stores a webhook body; one XADD.
    pub async fn store_webhook(&self, body: &[u8], received_ms: i64) -> Result<(), QueueError> {
        let _: String = redis::cmd("XADD")
            .arg(keys::EVENTS)
            .arg("*")
            .arg(BODY)
            .arg(body)
            .arg(RECEIVED)
            .arg(received_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Creates the events stream and its group if they do not exist.
    pub async fn ensure_events_group(&self) -> Result<(), QueueError> {
        self.create_group(keys::EVENTS).await
    }

    /// Up to `count` new events for this consumer, without waiting.
    pub async fn read_events(
        &self,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::CONSUMER_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(keys::EVENTS)
            .arg(">")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(StoredEvent::from_entry)
            .collect())
    }

    /// Events another consumer took more than `min_idle_ms` ago and did not
    /// finish (it died, or Redis failed it mid-way), now this consumer's.
    pub async fn claim_stale_events(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(keys::EVENTS)
            .arg(keys::CONSUMER_GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .claimed
            .into_iter()
            .map(StoredEvent::from_entry)
            .collect())
    }

    /// Takes a processed event off the stream.
    pub async fn finish_event(&self, entry_id: &str) -> Result<(), QueueError> {
        redis::pipe()
            .cmd("XACK")
            .arg(keys::EVENTS)
            .arg(keys::CONSUMER_GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(keys::EVENTS)
            .arg(entry_id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Events stored and not yet processed.
    pub async fn events_backlog(&self) -> Result<u64, QueueError> {
        Ok(redis::cmd("XLEN")
            .arg(keys::EVENTS)
            .query_async(&mut self.conn.clone())
            .await?)
    }
}

impl StoredEvent {
    fn from_entry(entry: StreamId) -> Self {
        let bytes = |name: &str| match entry.map.get(name) {
            Some(Value::BulkString(bytes)) => bytes.clone(),
            Some(Value::SimpleString(s)) => s.clone().into_bytes(),
            _ => Vec::new(),
        };
        let received_ms = String::from_utf8(bytes(RECEIVED))
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0);
        Self {
            body: bytes(BODY),
            received_ms,
            entry_id: entry.id,
        }
    }
}
