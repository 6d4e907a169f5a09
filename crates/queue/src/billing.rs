//! The marks that make the cost metrics count each thing once, however
//! often Meta repeats a status and whichever worker processes it: a billed
//! message is a field of its record (`billed:<wamid>`, so a resend under a
//! new wamid is billed again, as Meta bills it), set once by a script that
//! never recreates an expired record; a conversation is a key of its own
//! per sender, kept as long as any status of it can still be matched to a
//! record (`redis.record_ttl_seconds`, plus the day a conversation lasts).

use std::time::Duration;

use gateway_domain::MessageId;

use crate::{Queue, QueueError, keys, scripts};

/// A conversation lasts 24 hours: statuses of its last messages come up to
/// a day after it opened.
const CONVERSATION_SPAN: Duration = Duration::from_secs(24 * 3600);

impl Queue {
    /// Marks the message's send `wamid` billed; true the first time only
    /// (false too when its record is gone).
    pub async fn mark_billed(
        &self,
        phone_number_id: &str,
        message_id: &MessageId,
        wamid: &str,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let marked: i64 = scripts::MarkOnce {
            record_key: keys::record(phone_number_id, message_id.as_str()).into(),
            field: format!("billed:{wamid}").into(),
            now_ms: now_ms.into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        Ok(marked == 1)
    }

    /// Marks a conversation counted; true the first time only.
    /// `conversation_id` must be fit for a key (see
    /// `gateway_domain::rules::pricing::Conversation`).
    pub async fn mark_conversation(
        &self,
        phone_number_id: &str,
        conversation_id: &str,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let span = u64::try_from(CONVERSATION_SPAN.as_millis()).unwrap_or(u64::MAX);
        let keep_ms = self.record_ttl_ms.saturating_add(span);
        let set: Option<String> = redis::cmd("SET")
            .arg(keys::conversation(phone_number_id, conversation_id))
            .arg(now_ms)
            .arg("NX")
            .arg("PX")
            .arg(keep_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }
}
