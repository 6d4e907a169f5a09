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
    /// Held back by an account rule until `until_ms` (no attempt was made):
    /// the entry stays pending.
    Held { reason: &'a str, until_ms: i64 },
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
        let stream_key = || keys::stream(phone_number_id, delivery.lane);
        let record_key = || keys::record(phone_number_id, id);
        let mut invocation = match outcome {
            Outcome::Sent { wamid } => scripts::RecordSent {
                stream_key: stream_key().into(),
                record_key: record_key().into(),
                wamid_key: keys::wamid(phone_number_id, wamid).into(),
                recent_key: keys::recent_recipients(phone_number_id).into(),
                fate_key: keys::fate(phone_number_id, id).into(),
                group: keys::CONSUMER_GROUP.into(),
                entry_id: (&delivery.entry_id).into(),
                message_id: id.into(),
                wamid: wamid.into(),
                now_ms: now_ms.into(),
                attempts: progress.attempts.into(),
                record_ttl_ms: self.record_ttl_ms.into(),
                event: history_event("sent", now_ms, Some(("wamid", wamid))).into(),
                queued_event: queued_event.into(),
                fallback_used: progress.fallback_used.into(),
                recipient: delivery.recipient.key().into(),
                recent_ms: self.recent_recipients_ms.into(),
            }
            .invocation(),
            Outcome::Failed {
                code,
                title,
                reason,
            } => self.final_invocation(
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
            ),
            Outcome::Expired { reason } => self.final_invocation(
                phone_number_id,
                delivery,
                progress,
                Final {
                    status: MessageStatus::Expired,
                    code: 0,
                    title: "expired before it could be sent",
                    reason,
                },
                now_ms,
            ),
            Outcome::Retrying {
                code,
                title,
                next_attempt_ms,
            } => {
                let event = serde_json::json!({
                    "status": "retrying", "at_ms": now_ms, "error_code": code,
                    "error_title": title, "next_attempt_ms": next_attempt_ms,
                });
                let step = Step {
                    status: MessageStatus::Retrying,
                    code,
                    title,
                    next_attempt_ms,
                };
                self.progress_invocation(phone_number_id, delivery, progress, step, event, now_ms)
            }
            Outcome::Held { reason, until_ms } => {
                let event = serde_json::json!({
                    "status": "held", "at_ms": now_ms, "reason": reason, "until_ms": until_ms,
                });
                let step = Step {
                    status: MessageStatus::Held,
                    code: 0,
                    title: reason,
                    next_attempt_ms: until_ms,
                };
                self.progress_invocation(phone_number_id, delivery, progress, step, event, now_ms)
            }
        };
        for (field, value) in delivery.record_fields() {
            invocation.arg(field).arg(value.as_ref());
        }
        let recorded: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(recorded == 1)
    }

    /// The call for a message that stays pending (retrying, held); the
    /// record's fields follow.
    fn progress_invocation(
        &self,
        phone_number_id: &str,
        delivery: &Delivery,
        progress: Progress,
        step: Step<'_>,
        event: serde_json::Value,
        now_ms: i64,
    ) -> scripts::ScriptCall {
        let id = delivery.message_id.as_str();
        scripts::RecordProgress {
            record_key: keys::record(phone_number_id, id).into(),
            stream_key: keys::stream(phone_number_id, delivery.lane).into(),
            fate_key: keys::fate(phone_number_id, id).into(),
            status: step.status.as_str().into(),
            now_ms: now_ms.into(),
            attempts: progress.attempts.into(),
            next_attempt_ms: step.next_attempt_ms.into(),
            code: step.code.into(),
            title: step.title.into(),
            fallback_used: progress.fallback_used.into(),
            record_ttl_ms: self.record_ttl_ms.into(),
            event: event.to_string().into(),
            queued_event: history_event("queued", delivery.message_id.accepted_at_ms(), None)
                .into(),
            group: keys::CONSUMER_GROUP.into(),
            entry_id: (&delivery.entry_id).into(),
        }
        .invocation()
    }

    /// The call for a message that ended unsent; the record's fields follow.
    fn final_invocation(
        &self,
        phone_number_id: &str,
        delivery: &Delivery,
        progress: Progress,
        end: Final<'_>,
        now_ms: i64,
    ) -> scripts::ScriptCall {
        let entry_fields = delivery.entry_fields();
        let mut invocation = scripts::RecordFinal {
            stream_key: keys::stream(phone_number_id, delivery.lane).into(),
            record_key: keys::record(phone_number_id, delivery.message_id.as_str()).into(),
            dead_key: keys::dead_letters(phone_number_id).into(),
            fate_key: keys::fate(phone_number_id, delivery.message_id.as_str()).into(),
            group: keys::CONSUMER_GROUP.into(),
            entry_id: (&delivery.entry_id).into(),
            message_id: delivery.message_id.as_str().into(),
            code: end.code.into(),
            title: end.title.into(),
            now_ms: now_ms.into(),
            attempts: progress.attempts.into(),
            event: serde_json::json!({
                "status": end.status.as_str(), "at_ms": now_ms, "error_code": end.code,
                "error_title": end.title, "reason": end.reason,
            })
            .to_string()
            .into(),
            queued_event: history_event("queued", delivery.message_id.accepted_at_ms(), None)
                .into(),
            record_ttl_ms: self.record_ttl_ms.into(),
            dead_max_len: keys::DEAD_LETTER_MAX_LEN.into(),
            reason: end.reason.into(),
            final_status: end.status.as_str().into(),
            fallback_used: progress.fallback_used.into(),
            entry_pair_args: (entry_fields.len() * 2).into(),
        }
        .invocation();
        for (field, value) in entry_fields {
            invocation.arg(field).arg(value);
        }
        invocation
    }
}

/// A step on the way that leaves the message pending.
struct Step<'a> {
    status: MessageStatus,
    code: i64,
    title: &'a str,
    next_attempt_ms: i64,
}

/// How a message ended without being sent.
struct Final<'a> {
    status: MessageStatus,
    code: i64,
    title: &'a str,
    reason: &'a str,
}
