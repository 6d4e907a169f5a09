//! Meta's status events applied to the records of the messages they are
//! about: found by the message id echoed in `biz_opaque_callback_data` (or
//! the wamid index), read once so the worker can decide what the event
//! means, then applied by one script that counts each (status, wamid) once
//! and moves the status only forward.

use std::collections::HashMap;

use gateway_domain::webhook::{MetaError, MetaStatus};
use gateway_domain::{MessageId, MessageStatus};

use crate::{Queue, QueueError, fields, keys, scripts};

/// What a message's record says, for deciding what a status event means.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub message_id: MessageId,
    pub status: MessageStatus,
    /// The wamid of the message's latest send.
    pub wamid: String,
    /// This (status, wamid) was applied before.
    pub seen: bool,
    pub client: String,
    pub recipient: String,
    pub callback_url: Option<String>,
    pub metadata: Option<String>,
    pub attempts: u32,
    pub fallback_used: bool,
    /// The caller gave a fallback template.
    pub has_fallback: bool,
    pub created_ms: i64,
    /// When it became due (Unix ms): accepted, or later, its `send_after`
    /// or its replay; its age counts from then.
    pub due_ms: i64,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusResult {
    /// The message moved to the event's status (or back to the queue).
    Moved,
    /// Added to the history only: the message was already further along.
    Recorded,
    /// Applied before: Meta sent it again.
    Duplicate,
    /// About an earlier send of a message that was sent again since.
    Stale,
    /// No record (never ours, or expired).
    Unknown,
}

/// A status to apply.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub wamid: &'a str,
    pub status: MetaStatus,
    /// Meta's time for it (Unix ms).
    pub at_ms: i64,
    pub now_ms: i64,
    pub error: Option<&'a MetaError>,
    /// Why it failed, for the dead letter (`failed` only).
    pub reason: &'a str,
}

/// An asynchronous failure to try again.
#[derive(Debug, Clone, Copy)]
pub struct Requeue<'a> {
    pub wamid: &'a str,
    pub at_ms: i64,
    pub now_ms: i64,
    pub error: &'a MetaError,
    /// When the next attempt is due (Unix ms).
    pub due_ms: i64,
    /// Send the fallback template next (131047).
    pub fallback: bool,
    /// Close the recipient's window in our records (131047).
    pub close_window: bool,
}

/// The record fields a status event needs (see `fields`).
const VIEW_FIELDS: [&str; 11] = [
    "status",
    "wamid",
    fields::CLIENT,
    fields::RECIPIENT,
    fields::CALLBACK,
    fields::METADATA,
    fields::ATTEMPTS,
    fields::FALLBACK_USED,
    fields::FALLBACK,
    "created_ms",
    fields::DUE,
];

impl Queue {
    /// The record a status event is about, if there is one.
    pub async fn status_view(
        &self,
        phone_number_id: &str,
        wamid: &str,
        callback_data: Option<&str>,
        status: MetaStatus,
    ) -> Result<Option<StatusView>, QueueError> {
        let echoed = callback_data
            .and_then(MessageId::parse)
            .filter(|id| id.phone_number_id() == phone_number_id);
        let message_id = match echoed {
            Some(id) => id,
            None => {
                let indexed: Option<String> = redis::cmd("GET")
                    .arg(keys::wamid(phone_number_id, wamid))
                    .query_async(&mut self.conn.clone())
                    .await?;
                match indexed.as_deref().and_then(MessageId::parse) {
                    Some(id) => id,
                    None => return Ok(None),
                }
            }
        };
        let seen_field = format!("seen:{}:{wamid}", status.as_str());
        // Each field under its name and under the one it had before.
        let names: Vec<&str> = VIEW_FIELDS
            .iter()
            .copied()
            .chain(
                VIEW_FIELDS
                    .iter()
                    .filter_map(|name| fields::legacy_name(name)),
            )
            .collect();
        let mut values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(keys::record(phone_number_id, message_id.as_str()))
            .arg(&names)
            .arg(&seen_field)
            .query_async(&mut self.conn.clone())
            .await?;
        let seen = values.pop().flatten().is_some_and(|s| !s.is_empty());
        let mut view: HashMap<String, String> = names
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some(((*name).to_owned(), value?)))
            .collect();
        let mut take = |name: &str| fields::take_text(&mut view, name);
        let (Some(status), Some(wamid)) = (
            take("status").and_then(|s| MessageStatus::parse(&s)),
            take("wamid"),
        ) else {
            return Ok(None);
        };
        let created_ms = take("created_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| message_id.accepted_at_ms());
        let due_ms = take(fields::DUE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(created_ms);
        Ok(Some(StatusView {
            status,
            wamid,
            seen,
            attempts: take(fields::ATTEMPTS)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            fallback_used: take(fields::FALLBACK_USED).is_some_and(|f| f == "1"),
            has_fallback: take(fields::FALLBACK).is_some(),
            created_ms,
            due_ms,
            client: take(fields::CLIENT).unwrap_or_default(),
            recipient: take(fields::RECIPIENT).unwrap_or_default(),
            callback_url: take(fields::CALLBACK),
            metadata: take(fields::METADATA),
            message_id,
        }))
    }

    /// Applies a status event to the message's record (see apply_status.lua).
    pub async fn apply_status(
        &self,
        phone_number_id: &str,
        message_id: &MessageId,
        change: StatusChange<'_>,
    ) -> Result<StatusResult, QueueError> {
        let (code, title) = change.error.map_or((String::new(), ""), |e| {
            (e.code.to_string(), e.title.as_str())
        });
        let result: String = scripts::ApplyStatus {
            record_key: keys::record(phone_number_id, message_id.as_str()).into(),
            dead_key: keys::dead_letters(phone_number_id).into(),
            event_wamid: change.wamid.into(),
            new_status: change.status.as_str().into(),
            event: meta_event(change.status.as_str(), change.at_ms, change.error).into(),
            now_ms: change.now_ms.into(),
            code: code.into(),
            title: title.into(),
            reason: change.reason.into(),
            dead_max_len: keys::DEAD_LETTER_MAX_LEN.into(),
            message_id: message_id.as_str().into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        StatusResult::parse(&result)
    }

    /// Queues a message again after an asynchronous failure (see requeue_failed.lua).
    pub async fn requeue_failed(
        &self,
        phone_number_id: &str,
        view: &StatusView,
        requeue: Requeue<'_>,
    ) -> Result<StatusResult, QueueError> {
        let id = &view.message_id;
        let result: String = scripts::RequeueFailed {
            record_key: keys::record(phone_number_id, id.as_str()).into(),
            scheduled_key: keys::scheduled(phone_number_id).into(),
            window_key: keys::window(phone_number_id, &view.recipient).into(),
            event_wamid: requeue.wamid.into(),
            event: meta_event("failed", requeue.at_ms, Some(requeue.error)).into(),
            now_ms: requeue.now_ms.into(),
            code: requeue.error.code.into(),
            title: (&requeue.error.title).into(),
            due_ms: requeue.due_ms.into(),
            message_id: id.as_str().into(),
            lane_code: id.lane().code().into(),
            send_fallback: requeue.fallback.into(),
            close_window: requeue.close_window.into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        StatusResult::parse(&result)
    }
}

/// A history event from Meta: `source` tells it apart from the gateway's own.
fn meta_event(status: &str, at_ms: i64, error: Option<&MetaError>) -> String {
    let mut event = serde_json::json!({ "status": status, "at_ms": at_ms, "source": "meta" });
    if let (Some(error), Some(map)) = (error, event.as_object_mut()) {
        map.insert("error_code".into(), error.code.into());
        map.insert("error_title".into(), error.title.clone().into());
    }
    event.to_string()
}

impl StatusResult {
    fn parse(reply: &str) -> Result<Self, QueueError> {
        Ok(match reply {
            "moved" => Self::Moved,
            "recorded" => Self::Recorded,
            "duplicate" => Self::Duplicate,
            "stale" => Self::Stale,
            "unknown" => Self::Unknown,
            other => {
                return Err(QueueError::Protocol(format!(
                    "unexpected status script reply {other:?}"
                )));
            }
        })
    }
}
