//! Read receipts on their way to the sender's owner: the api cannot send
//! them itself, because they count towards the sender's throughput, which
//! only the owning worker keeps. They wait in a short list per sender
//! (`gw:{pnid}:reads`, JSON requests, oldest first), apart from the
//! message streams, so they never wait behind the sender's backlog; the
//! owner watches the key and takes them at once. The list is bounded: when
//! no worker drains it, the api refuses more instead of piling them up.
//! A receipt taken by a worker that dies before sending it is lost (a
//! receipt is a courtesy; the next one marks the conversation read too).

use serde::{Deserialize, Serialize};

use crate::{Queue, QueueError, keys, scripts};

/// At most this many receipts wait for one sender.
pub const READS_WAITING_MOST: usize = 1_000;

/// Receipts nobody took within this are dropped with their list.
const READS_TTL_MS: u64 = 3_600_000;

/// Mark `message_id` (an inbound message) read; with `typing`, show the
/// typing indicator too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub message_id: String,
    #[serde(default)]
    pub typing: bool,
    /// When the api accepted it (Unix ms).
    pub at_ms: i64,
}

impl Queue {
    /// Whether the sender received the inbound message `wamid` (the webhook
    /// handler remembers every one for 7 days).
    pub async fn inbound_known(
        &self,
        phone_number_id: &str,
        wamid: &str,
    ) -> Result<bool, QueueError> {
        let exists: bool = redis::cmd("EXISTS")
            .arg(keys::inbound(phone_number_id, wamid))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(exists)
    }

    /// Queues a receipt; false when [`READS_WAITING_MOST`] wait already.
    pub async fn push_read(
        &self,
        phone_number_id: &str,
        request: &ReadRequest,
    ) -> Result<bool, QueueError> {
        let json = serde_json::to_string(request)
            .map_err(|e| QueueError::Protocol(format!("read request: {e}")))?;
        let queued: i64 = scripts::PushRead {
            reads_key: keys::reads(phone_number_id).into(),
            request: json.into(),
            most: READS_WAITING_MOST.into(),
            ttl_ms: READS_TTL_MS.into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        Ok(queued == 1)
    }

    /// Takes up to `most` waiting receipts, oldest first. Entries that do
    /// not parse (written by something else) are dropped.
    pub async fn take_reads(
        &self,
        phone_number_id: &str,
        most: usize,
    ) -> Result<Vec<ReadRequest>, QueueError> {
        let taken: Option<Vec<String>> = redis::cmd("LPOP")
            .arg(keys::reads(phone_number_id))
            .arg(most.max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken
            .unwrap_or_default()
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }
}
