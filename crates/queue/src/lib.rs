//! The durable queue: everything the gateway keeps in Redis, behind a small
//! typed API. One stream per sender holds the messages waiting to be sent; a
//! hash per message holds its record; scripts change them together so that
//! every step (accept, sent, failed, a status from Meta) is all-or-nothing.
//! Beside them: the webhook events stream, the recipients' windows, leases,
//! dead letters and each WABA's template registry. Key layout: [`keys`].
//!
//! Guarantees: `enqueue` returns `Queued` only after Redis has stored the
//! entry, the record and the idempotency key; a stream entry leaves the
//! queue only in the same step that records the message's outcome.

mod billing;
mod cancel;
mod client_quota;
mod connection;
pub mod consumer;
mod dead_letters;
mod error;
mod fields;
pub mod keys;
mod leases;
mod liveness;
mod media;
mod outcome;
pub mod parked;
mod portfolio;
mod quality;
mod read_receipts;
mod record;
mod scripts;
mod sender_load;
mod stats;
mod status_events;
mod stream;
mod suppressions;
mod templates;
mod watch;
mod webhook_events;
mod window;

pub use cancel::{CancelFilter, CancelOutcome, Cancelled, SendClaim};
pub use client_quota::{QuotaExceeded, QuotaGrant, QuotaLimits, QuotaScope};
pub use connection::{RedisConnection, connect};
pub use consumer::{Claim, Consumer};
pub use dead_letters::{DeadLetter, DeadLetterFilter};
pub use error::QueueError;
pub use leases::RetryState;
pub use liveness::{LivenessRange, SLOTS_PER_RANGE};
pub use media::{MEDIA_KEPT_AFTER_EXPIRY, MediaRecord};
pub use outcome::{Outcome, Progress};
pub use parked::{PARKED_CONSUMER, ParkedSummary, RoutedRead, UnparkLimits, Unparked};
pub use portfolio::{ConversationRoom, PortfolioVerdict};
pub use read_receipts::{READS_WAITING_MOST, ReadRequest};
pub use record::MessageRecord;
pub use sender_load::{LoadReading, PUBLISHED_RATE_TTL};
pub use stats::{SenderStats, SharedStats, StreamDepth};
pub use status_events::{Requeue, StatusChange, StatusResult, StatusView};
pub use stream::{Delivery, QueueDepth};
pub use suppressions::Suppression;
pub use templates::{TEMPLATE_REFRESH, TemplateCache, TemplateChange};
pub use watch::KeyWatcher;
pub use webhook_events::{EventAdmission, StoredEvent};

use std::collections::HashMap;

use gateway_domain::templates::TemplateCategory;
use gateway_domain::{Lane, MessageId};

/// A message the api has accepted and wants stored.
#[derive(Debug)]
pub struct NewMessage<'a> {
    pub sender_name: &'a str,
    pub phone_number_id: &'a str,
    pub client: &'a str,
    /// `Recipient::key()`: E.164 number or BSUID.
    pub recipient: &'a str,
    pub kind: &'a str,
    /// The Graph API request body, ready to POST once the worker adds the
    /// message id as `biz_opaque_callback_data`.
    pub graph_body: &'a str,
    /// The same for the caller's fallback template, if any.
    pub fallback_body: Option<&'a str>,
    pub metadata: Option<&'a str>,
    /// The caller's idempotency key and a fingerprint of the payload it covers.
    pub idempotency: Option<Idempotency<'a>>,
    /// `Transactional` or `Bulk`.
    pub lane: Lane,
    /// Hold until then (Unix ms); `None` or a time past queues it now.
    pub send_after_ms: Option<i64>,
    /// Never send after then (Unix ms, as text for the stream entry).
    pub expires_at_ms: Option<String>,
    /// Where the message's status events are POSTed.
    pub callback_url: Option<&'a str>,
    /// A template message's category, as the WABA's registry knew it.
    pub template_category: Option<TemplateCategory>,
    /// The same for its fallback template.
    pub fallback_category: Option<TemplateCategory>,
    /// This request's own id, unique to it: on a Redis Cluster the same
    /// request stored again (the driver resends a command whose connection
    /// dropped) answers the first id and stores nothing more.
    pub request: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// What storing a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued(MessageId),
    /// The idempotency key was seen with the same payload: this is the first id.
    Duplicate(MessageId),
    /// The idempotency key was seen with another payload.
    Conflict(MessageId),
}

/// The gateway's handle on Redis (one server or a cluster). Cheap to clone:
/// all clones share one multiplexed connection that reconnects by itself.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConnection,
    record_ttl_ms: u64,
    /// See [`Queue::remembering_recipients_for`].
    recent_recipients_ms: u64,
}

impl Queue {
    /// Keeps each recipient a send went to in the sender's recent
    /// recipients for `pair_window` (at least [`keys::RECENT_RECIPIENTS_MS`]),
    /// so that a new owner of the sender finds every send its pair limit
    /// still counts.
    pub fn remembering_recipients_for(mut self, pair_window: std::time::Duration) -> Self {
        self.recent_recipients_ms = keys::recent_recipients_kept_ms(pair_window);
        self
    }

    /// Stores one message in one round trip: a plain XADD, or a script
    /// when an idempotency key, a `send_after` or a cluster needs more.
    pub async fn enqueue(
        &self,
        message: &NewMessage<'_>,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, QueueError> {
        let mut conn = self.conn.clone();
        match self.enqueue_invocation(message, now_ms)? {
            None => {
                let entry_id: String = fields::xadd(message).query_async(&mut conn).await?;
                queued(message, &entry_id)
            }
            Some(invocation) => {
                EnqueueOutcome::from_reply(invocation.invoke_async(&mut conn).await?)
            }
        }
    }

    /// Stores many messages in one pipeline; one result per message, in order.
    pub async fn enqueue_batch(
        &self,
        messages: &[NewMessage<'_>],
        now_ms: i64,
    ) -> Result<Vec<Result<EnqueueOutcome, QueueError>>, QueueError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // EVALSHA in a pipeline is not retried on NOSCRIPT (after a Redis
        // restart), so the script is loaded first in the same round trip. On
        // a cluster the pipeline is split per slot and the SCRIPT LOAD leads
        // each part, so every master is loaded before its EVALSHAs.
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(scripts::Enqueue::source());
        let mut scripted = Vec::with_capacity(messages.len());
        for message in messages {
            match self.enqueue_invocation(message, now_ms)? {
                None => {
                    pipe.add_command(fields::xadd(message));
                    scripted.push(false);
                }
                Some(invocation) => {
                    pipe.add_command(invocation.command());
                    scripted.push(true);
                }
            }
        }
        let mut replies: Vec<redis::RedisResult<redis::Value>> =
            pipe.query_async(&mut self.conn.clone()).await?;
        if replies.len() != messages.len() + 1 {
            return Err(QueueError::Protocol("pipeline reply count".into()));
        }
        replies.remove(0)?;
        Ok(replies
            .into_iter()
            .zip(messages.iter().zip(scripted))
            .map(|(reply, (message, scripted))| {
                let reply = reply?;
                let protocol = |e: redis::ParsingError| QueueError::Protocol(e.to_string());
                if scripted {
                    EnqueueOutcome::from_reply(redis::from_redis_value(reply).map_err(protocol)?)
                } else {
                    queued(
                        message,
                        &redis::from_redis_value::<String>(reply).map_err(protocol)?,
                    )
                }
            })
            .collect())
    }

    /// The script call for a message that needs one; `None` for a plain XADD.
    fn enqueue_invocation(
        &self,
        m: &NewMessage<'_>,
        now_ms: i64,
    ) -> Result<Option<scripts::ScriptCall>, QueueError> {
        let due = m.send_after_ms.filter(|due| *due > now_ms);
        // A cluster connection resends a command whose connection dropped
        // (it cannot know whether the command ran): a plain XADD would then
        // queue the message twice. A scheduled message's script is a repeat
        // by itself (same member, same record).
        let guard_repeat = m.idempotency.is_none() && due.is_none();
        if guard_repeat && !self.conn.is_cluster() {
            return Ok(None);
        }
        let pnid = m.phone_number_id;
        let scheduled_id = due.map(|_| scheduled_id(pnid, now_ms)).transpose()?;
        let entry_fields: Vec<(&str, &str)> = fields::of_new(m).collect();
        let (member, record_fields) = match (&scheduled_id, due) {
            (Some(id), Some(due)) => {
                let flat: Vec<&str> = entry_fields.iter().flat_map(|(k, v)| [*k, *v]).collect();
                let member =
                    serde_json::json!({ "id": id.as_str(), "lane": m.lane.code(), "fields": flat })
                        .to_string();
                let event = serde_json::json!({ "status": "scheduled", "at_ms": now_ms, "send_after_ms": due }).to_string();
                let record = vec![
                    ("status", "scheduled".to_owned()),
                    (fields::SENDER, m.sender_name.to_owned()),
                    (fields::CLIENT, m.client.to_owned()),
                    (fields::RECIPIENT, m.recipient.to_owned()),
                    (fields::KIND, m.kind.to_owned()),
                    (fields::LANE, m.lane.code().to_owned()),
                    ("created_ms", now_ms.to_string()),
                    ("updated_ms", now_ms.to_string()),
                    (fields::ATTEMPTS, "0".to_owned()),
                    ("next_attempt_ms", due.to_string()),
                    (fields::METADATA, m.metadata.unwrap_or("").to_owned()),
                    // Its status events have somewhere to go before it is sent (a cancel).
                    (fields::CALLBACK, m.callback_url.unwrap_or("").to_owned()),
                    ("history", format!("[{event}]")),
                ];
                (member, record)
            }
            _ => (String::new(), Vec::new()),
        };
        // The record must outlive the wait.
        let record_ttl = self
            .record_ttl_ms
            .saturating_add(u64::try_from(due.unwrap_or(now_ms) - now_ms).unwrap_or(0));
        let mut invocation = scripts::Enqueue {
            stream_key: keys::stream(pnid, m.lane).into(),
            scheduled_key: keys::scheduled(pnid).into(),
            record_key: keys::record(
                pnid,
                scheduled_id.as_ref().map_or("unused", |id| id.as_str()),
            )
            .into(),
            sender: pnid.into(),
            id_mark: m.lane.id_prefix().into(),
            fingerprint: m.idempotency.map_or("", |i| i.fingerprint).into(),
            guard_ttl_ms: if guard_repeat {
                keys::REPEAT_TTL_MS
            } else {
                keys::IDEMPOTENCY_TTL_MS
            }
            .into(),
            scheduled_id: scheduled_id.as_ref().map_or("", |id| id.as_str()).into(),
            due_ms: due.unwrap_or(0).into(),
            record_ttl_ms: record_ttl.into(),
            scheduled_member: member.into(),
            record_pair_args: (record_fields.len() * 2).into(),
        }
        .invocation();
        if let Some(idempotency) = m.idempotency {
            invocation.key(keys::idempotency(pnid, m.client, idempotency.key));
        } else if guard_repeat {
            invocation.key(keys::repeat(pnid, m.request));
        }
        for (field, value) in &record_fields {
            invocation.arg(*field).arg(value);
        }
        for (field, value) in entry_fields {
            invocation.arg(field).arg(value);
        }
        Ok(Some(invocation))
    }

    /// Moves the sender's scheduled messages that are due into their
    /// streams; returns how many moved and when the next one is due (Unix ms).
    pub async fn promote_scheduled(
        &self,
        phone_number_id: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<(usize, Option<i64>), QueueError> {
        let (moved, next): (usize, redis::Value) = scripts::PromoteScheduled {
            scheduled_key: keys::scheduled(phone_number_id).into(),
            transactional_key: keys::queue(phone_number_id).into(),
            bulk_key: keys::bulk(phone_number_id).into(),
            now_ms: now_ms.into(),
            most: limit.into(),
            fate_prefix: keys::fate(phone_number_id, "").into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        Ok((moved, parked::score_ms(next)))
    }

    /// The record of a message, or `None` if it is unknown or expired. A
    /// message no worker has touched yet has no record: it is read from its
    /// stream entry.
    pub async fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, QueueError> {
        let pnid = id.phone_number_id();
        // A scheduled message always has a record; others may not yet.
        let entry_id = id.entry_id().unwrap_or("0-0");
        let (fields, entries): (HashMap<String, String>, redis::streams::StreamRangeReply) =
            redis::pipe()
                .cmd("HGETALL")
                .arg(keys::record(pnid, id.as_str()))
                .cmd("XRANGE")
                .arg(keys::stream(pnid, id.lane()))
                .arg(entry_id)
                .arg(entry_id)
                .query_async(&mut self.conn.clone())
                .await?;
        if !fields.is_empty() {
            return MessageRecord::from_fields(id, fields);
        }
        Ok(entries
            .ids
            .into_iter()
            .next()
            .and_then(|entry| Delivery::from_entry(pnid, id.lane(), entry).ok())
            .filter(|delivery| &delivery.message_id == id)
            .map(|delivery| MessageRecord::queued(&delivery)))
    }

    /// The message a wamid belongs to, looked up under each of these senders.
    pub async fn find_by_wamid(
        &self,
        phone_number_ids: &[String],
        wamid: &str,
    ) -> Result<Option<MessageId>, QueueError> {
        if phone_number_ids.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for pnid in phone_number_ids {
            pipe.cmd("GET").arg(keys::wamid(pnid, wamid));
        }
        let found: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(found
            .into_iter()
            .flatten()
            .find_map(|id| MessageId::parse(&id)))
    }

    /// The shared connection, for other stores kept in the same Redis (notifications).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// A reader of `stream` through `group` as `name` (see [`Consumer`]).
    pub fn consumer(&self, stream: &str, group: &str, name: &str, claim: Claim) -> Consumer {
        Consumer::new(self.conn.clone(), stream, group, name, claim)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

impl EnqueueOutcome {
    fn from_reply((outcome, id): (String, String)) -> Result<Self, QueueError> {
        let parse_id = || {
            MessageId::parse(&id)
                .ok_or_else(|| QueueError::Protocol(format!("bad stored id {id:?}")))
        };
        match outcome.as_str() {
            "queued" => Ok(Self::Queued(parse_id()?)),
            "duplicate" => Ok(Self::Duplicate(parse_id()?)),
            "conflict" => Ok(Self::Conflict(parse_id()?)),
            other => Err(QueueError::Protocol(format!("enqueue answered {other:?}"))),
        }
    }
}

fn queued(message: &NewMessage<'_>, entry_id: &str) -> Result<EnqueueOutcome, QueueError> {
    MessageId::new(message.phone_number_id, message.lane, entry_id)
        .map(EnqueueOutcome::Queued)
        .ok_or_else(|| QueueError::Protocol(format!("XADD answered {entry_id:?}")))
}

/// A scheduled message has no stream entry yet: its id is the time and 64
/// random bits.
fn scheduled_id(phone_number_id: &str, now_ms: i64) -> Result<MessageId, QueueError> {
    let random = ulid::Ulid::new().random() as u64;
    let sequence = format!("{}-{random}", now_ms.max(0));
    MessageId::new(phone_number_id, Lane::Scheduled, &sequence)
        .ok_or_else(|| QueueError::Protocol(format!("phone_number_id {phone_number_id:?}")))
}

/// One entry of a record's history, as JSON. Written into one buffer: the
/// record scripts take two of these per message.
pub(crate) fn history_event(status: &str, at_ms: i64, extra: Option<(&str, &str)>) -> String {
    use serde::ser::{SerializeMap, Serializer};
    let mut json = Vec::with_capacity(96);
    let mut serializer = serde_json::Serializer::new(&mut json);
    // Writing strings and a number into a Vec cannot fail.
    let written = serializer.serialize_map(None).and_then(|mut event| {
        event.serialize_entry("status", status)?;
        event.serialize_entry("at_ms", &at_ms)?;
        if let Some((key, value)) = extra {
            event.serialize_entry(key, value)?;
        }
        event.end()
    });
    match written {
        Ok(()) => String::from_utf8(json).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_event_is_one_json_object() {
        let sent: serde_json::Value =
            serde_json::from_str(&history_event("sent", 17, Some(("wamid", "wamid.\"x\""))))
                .expect("json");
        assert_eq!(
            sent,
            serde_json::json!({"status": "sent", "at_ms": 17, "wamid": "wamid.\"x\""})
        );
        let queued: serde_json::Value =
            serde_json::from_str(&history_event("queued", 5, None)).expect("json");
        assert_eq!(queued, serde_json::json!({"status": "queued", "at_ms": 5}));
    }
}
