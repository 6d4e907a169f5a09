//! The webhook events stream: bodies the api received from Meta with a valid
//! signature, stored as they came (the raw bytes, so nothing is lost to a
//! re-serialisation), and processed behind the api's 200 by the workers
//! through the `workers` consumer group (read with a [`crate::Consumer`]).
//! An event leaves the stream only once processed; a worker that dies
//! leaves it pending, and another claims it once stale.

use redis::Value;
use redis::streams::StreamId;

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
    /// The body of an entry of the events stream.
    pub fn from_entry(entry: StreamId) -> Self {
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
