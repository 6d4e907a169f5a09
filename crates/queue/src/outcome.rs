//! Recording what became of a message a worker holds: each call is one
//! script, so the record, the queue entry and the dead letter change
//! together or not at all.

use gateway_domain::MessageStatus;

use crate::{Delivery, Queue, QueueError, history_event, keys, scripts};

/// What the worker has done with a message so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Sends tried, including the one just made.
    pub attempts: u32,
    /// Whether the fallback template was (or is being) sent instead.
    pub fallback_used: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Meta accepted it: the entry leaves the queue.
    Sent { wamid: &'a str },
    /// It failed for good: the entry leaves the queue for the dead letters.
    Failed {
        code: i64,
        title: &'a str,
        reason: &'a str,
    },
    /// It was not sent in time: the entry leaves the queue.
    Expired { reason: &'a str },
    /// Another attempt is due at `next_attempt_ms`: the entry stays pending.
    Retrying {
        code: i64,
        title: &'a str,
        next_attempt_ms: i64,
    },
}

impl Queue {
    /// Records what became of a message the caller holds. `false` when it
    /// changed nothing: the entry was no longer pending (another worker
    /// finished the message after the caller lost its sender), so a stale
    /// owner never writes over the new owner's record.
    pub async fn record(
        &self,
        phone_number_id: &str,
        delivery: &Delivery,
        progress: Progress,
        outcome: Outcome<'_>,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let id = delivery.message_id.as_str();
        let queued_event = history_event("queued", delivery.message_id.accepted_at_ms(), None);
        let fallback = if progress.fallback_used { "1" } else { "0" };
        let mut invocation;
        match outcome {
            Outcome::Sent { wamid } => {
                invocation = scripts::RECORD_SENT.prepare_invoke();
                invocation
                    .key(keys::stream(phone_number_id, delivery.lane))
                    .key(keys::record(phone_number_id, id))
                    .key(keys::wamid(phone_number_id, wamid))
                    .key(keys::recent_recipients(phone_number_id))
                    .arg(keys::CONSUMER_GROUP)
                    .arg(&delivery.entry_id)
                    .arg(id)
                    .arg(wamid)
                    .arg(now_ms)
                    .arg(progress.attempts)
                    .arg(self.record_ttl_ms)
                    .arg(history_event("sent", now_ms, Some(("wamid", wamid))))
                    .arg(queued_event)
                    .arg(fallback)
                    .arg(&delivery.recipient)
                    .arg(keys::RECENT_RECIPIENTS_MS);
            }
            Outcome::Failed {
                code,
                title,
                reason,
            } => {
                invocation = self.final_invocation(
                    phone_number_id,
                    delivery,
                    progress,
                    Final {
                        status: MessageStatus::Failed,
                        code,
                        title,
                        reason,
                    },
                    now_ms,
                );
            }
            Outcome::Expired { reason } => {
                let title = "expired before it could be sent";
                invocation = self.final_invocation(
                    phone_number_id,
                    delivery,
                    progress,
                    Final {
                        status: MessageStatus::Expired,
                        code: 0,
                        title,
                        reason,
                    },
                    now_ms,
                );
            }
            Outcome::Retrying {
                code,
                title,
                next_attempt_ms,
            } => {
                let event = serde_json::json!({
                    "status": "retrying", "at_ms": now_ms, "error_code": code,
                    "error_title": title, "next_attempt_ms": next_attempt_ms,
                })
                .to_string();
                invocation = scripts::RECORD_PROGRESS.prepare_invoke();
                invocation
                    .key(keys::record(phone_number_id, id))
                    .key(keys::stream(phone_number_id, delivery.lane))
                    .arg(MessageStatus::Retrying.as_str())
                    .arg(now_ms)
                    .arg(progress.attempts)
                    .arg(next_attempt_ms)
                    .arg(code)
                    .arg(title)
                    .arg(fallback)
                    .arg(self.record_ttl_ms)
                    .arg(event)
                    .arg(queued_event)
                    .arg(keys::CONSUMER_GROUP)
                    .arg(&delivery.entry_id);
            }
        }
        for (field, value) in delivery.record_fields() {
            invocation.arg(field).arg(value.as_ref());
        }
        let recorded: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(recorded == 1)
    }

    fn final_invocation(
        &self,
        phone_number_id: &str,
        delivery: &Delivery,
        progress: Progress,
        end: Final<'_>,
        now_ms: i64,
    ) -> redis::ScriptInvocation<'static> {
        let id = delivery.message_id.as_str();
        let event = serde_json::json!({
            "status": end.status.as_str(), "at_ms": now_ms, "error_code": end.code,
            "error_title": end.title, "reason": end.reason,
        })
        .to_string();
        let entry_fields = delivery.entry_fields();
        let mut invocation = scripts::RECORD_FINAL.prepare_invoke();
        invocation
            .key(keys::stream(phone_number_id, delivery.lane))
            .key(keys::record(phone_number_id, id))
            .key(keys::dead_letters(phone_number_id))
            .arg(keys::CONSUMER_GROUP)
            .arg(&delivery.entry_id)
            .arg(id)
            .arg(end.code)
            .arg(end.title)
            .arg(now_ms)
            .arg(progress.attempts)
            .arg(event)
            .arg(history_event(
                "queued",
                delivery.message_id.accepted_at_ms(),
                None,
            ))
            .arg(self.record_ttl_ms)
            .arg(keys::DEAD_LETTER_MAX_LEN)
            .arg(end.reason)
            .arg(end.status.as_str())
            .arg(if progress.fallback_used { "1" } else { "0" })
            .arg(entry_fields.len() * 2);
        for (field, value) in entry_fields {
            invocation.arg(field).arg(value);
        }
        invocation
    }
}

/// How a message ended without being sent.
struct Final<'a> {
    status: MessageStatus,
    code: i64,
    title: &'a str,
    reason: &'a str,
}
