//! The webhook events stream: bodies the api received from Meta with a valid
//! signature, stored as they came (the raw bytes, so nothing is lost to a
//! re-serialisation), and processed behind the api's 200 by the workers
//! through the `workers` consumer group (read with a [`crate::Consumer`]).
//! An event leaves the stream only once processed; a worker that dies
//! leaves it pending, and another claims it once stale.
//!
//! The stream is bounded: a body is stored only while the stream holds
//! fewer than the caller's `max_backlog` entries (checked in the same
//! script as the XADD, `webhook_events/store.lua`), so with no worker
//! running it stops growing and Meta, answered 503, retries later. The
//! script is not among the per-sender scripts (`scripts`): the stream
//! belongs to no sender and needs none of their prelude.

use std::sync::LazyLock;

use redis::streams::StreamId;
use redis::{Script, Value};

use crate::{Queue, QueueError, keys};

const BODY: &str = "body";
const RECEIVED: &str = "at";

static STORE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("webhook_events/store.lua")));

/// What [`Queue::store_webhook`] did with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAdmission {
    /// In the stream, for the workers.
    Stored,
    /// The stream holds `max_backlog` entries already: nothing was stored.
    BacklogFull,
}

/// A stored webhook body.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub entry_id: String,
    pub body: Vec<u8>,
    /// When the api received it (Unix ms).
    pub received_ms: i64,
}

impl Queue {
    /// Stores a webhook body unless the stream already holds `max_backlog`
    /// entries; one script call.
    pub async fn store_webhook(
        &self,
        body: &[u8],
        received_ms: i64,
        max_backlog: u64,
    ) -> Result<EventAdmission, QueueError> {
        let stored: i64 = STORE
            .key(keys::EVENTS)
            .arg(max_backlog)
            .arg(BODY)
            .arg(body)
            .arg(RECEIVED)
            .arg(received_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if stored == 1 {
            EventAdmission::Stored
        } else {
            EventAdmission::BacklogFull
        })
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
