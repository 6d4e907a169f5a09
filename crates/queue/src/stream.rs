//! Reading a sender's queue stream through the `workers` consumer group, and
//! measuring it.

use std::time::Duration;

use gateway_domain::MessageId;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};

use crate::{Queue, QueueError, keys};

/// One message handed to a worker: what it needs to call the Graph API and
/// to record the outcome.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id, to acknowledge.
    pub entry_id: String,
    pub message_id: MessageId,
    pub recipient: String,
    pub kind: String,
    /// The Graph API request body, ready to POST.
    pub body: String,
    /// The Graph API body of the caller's fallback template.
    pub fallback: Option<String>,
    pub accepted_at_ms: i64,
}

/// How far behind a sender is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Entries not yet done (waiting or in flight).
    pub length: u64,
    /// When the oldest of them was queued (Unix ms), if any.
    pub oldest_ms: Option<i64>,
}

impl Queue {
    /// Creates the sender's stream and consumer group if they do not exist.
    /// The group starts at the beginning, so messages queued before the
    /// first worker came up are read too.
    pub async fn ensure_group(&self, phone_number_id: &str) -> Result<(), QueueError> {
        let result: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys::queue(phone_number_id))
            .arg(keys::CONSUMER_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match result {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Up to `count` new entries for this consumer, waiting up to `block` for
    /// the first. Entries that cannot be parsed are returned as `Err` with
    /// their entry id, so the caller can move them out of the way.
    pub async fn read_new(
        &self,
        conn: &mut MultiplexedConnection,
        phone_number_id: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Result<Delivery, String>>, QueueError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::CONSUMER_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(keys::queue(phone_number_id))
            .arg(">")
            .query_async(conn)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|entry| Delivery::from_entry(entry))
            .collect())
    }

    /// Acknowledges and deletes an entry that is not a message this gateway
    /// wrote, so it cannot block the queue.
    pub async fn discard(&self, phone_number_id: &str, entry_id: &str) -> Result<(), QueueError> {
        let key = keys::queue(phone_number_id);
        redis::pipe()
            .cmd("XACK")
            .arg(&key)
            .arg(keys::CONSUMER_GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(&key)
            .arg(entry_id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The number of entries not yet done and the age of the oldest.
    pub async fn depth(&self, phone_number_id: &str) -> Result<QueueDepth, QueueError> {
        let key = keys::queue(phone_number_id);
        let (length, oldest): (u64, Vec<(String, Value)>) = redis::pipe()
            .cmd("XLEN")
            .arg(&key)
            .cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        let oldest_ms = oldest
            .first()
            .and_then(|(id, _)| id.split_once('-'))
            .and_then(|(ms, _)| ms.parse().ok());
        Ok(QueueDepth { length, oldest_ms })
    }
}

impl Delivery {
    fn from_entry(entry: StreamId) -> Result<Self, String> {
        let text = |name: &str| -> Option<String> {
            match entry.map.get(name)? {
                Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        let parsed = (|| {
            Some(Self {
                entry_id: entry.id.clone(),
                message_id: MessageId::parse(&text("id")?)?,
                recipient: text("rcpt")?,
                kind: text("kind")?,
                body: text("body")?,
                fallback: text("fb"),
                accepted_at_ms: text("at")?.parse().ok()?,
            })
        })();
        parsed.ok_or_else(|| entry.id.clone())
    }
}
