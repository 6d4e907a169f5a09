//! The durable queue: everything the gateway keeps in Redis, behind a small
//! typed API. One stream per sender holds the messages waiting to be sent; a
//! hash per message holds its record; scripts change them together so that
//! every step (accept, sent, failed) is all-or-nothing. Key layout: [`keys`].
//!
//! Guarantees: `enqueue` returns `Queued` only after Redis has stored the
//! entry, the record and the idempotency key; a stream entry leaves the
//! queue only in the same step that records the message's outcome.

mod connection;
mod error;
pub mod keys;
mod record;
mod scripts;
mod stream;

pub use connection::connect;
pub use error::QueueError;
pub use record::MessageRecord;
pub use stream::{Delivery, QueueDepth};

use gateway_domain::MessageId;
use redis::aio::ConnectionManager;

/// A message the api has accepted and wants stored.
#[derive(Debug)]
pub struct NewMessage<'a> {
    pub id: &'a MessageId,
    pub sender_name: &'a str,
    pub phone_number_id: &'a str,
    pub client: &'a str,
    /// `Recipient::key()`: E.164 number or BSUID.
    pub recipient: &'a str,
    pub kind: &'a str,
    /// The Graph API request body, ready to POST.
    pub graph_body: &'a str,
    /// The Graph API body of the caller's fallback template, if any.
    pub fallback_body: Option<&'a str>,
    pub metadata: Option<&'a str>,
    /// The caller's idempotency key and a fingerprint of the payload it
    /// covers (without the message id, which differs on every request).
    pub idempotency: Option<Idempotency<'a>>,
    pub accepted_at_ms: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// What storing a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued,
    /// The idempotency key was seen with the same payload: this is the first id.
    Duplicate(MessageId),
    /// The idempotency key was seen with another payload.
    Conflict(MessageId),
}

/// The outcome of a message, recorded when its stream entry leaves the queue.
#[derive(Debug)]
pub enum Outcome<'a> {
    Sent {
        wamid: &'a str,
    },
    Failed {
        code: i64,
        title: &'a str,
        reason: &'a str,
    },
}

/// The gateway's handle on Redis. Cheap to clone: all clones share one
/// multiplexed connection that reconnects by itself.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    client: redis::Client,
    record_ttl_ms: u64,
    response_timeout: std::time::Duration,
}

impl Queue {
    /// Stores one message. One round trip: a script does it all.
    pub async fn enqueue(&self, message: &NewMessage<'_>) -> Result<EnqueueOutcome, QueueError> {
        let invocation = self.enqueue_invocation(message);
        let reply: (String, String) = invocation.invoke_async(&mut self.conn.clone()).await?;
        EnqueueOutcome::from_reply(reply)
    }

    /// Stores many messages in one pipeline; one result per message, in order.
    pub async fn enqueue_batch(
        &self,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<Result<EnqueueOutcome, QueueError>>, QueueError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // EVALSHA in a pipeline is not retried on NOSCRIPT (after a Redis
        // restart), so the script is loaded first in the same round trip.
        pipe.cmd("SCRIPT").arg("LOAD").arg(scripts::ENQUEUE_SOURCE);
        for message in messages {
            pipe.invoke_script(&self.enqueue_invocation(message));
        }
        let mut replies: Vec<redis::RedisResult<redis::Value>> =
            pipe.query_async(&mut self.conn.clone()).await?;
        if replies.len() != messages.len() + 1 {
            return Err(QueueError::Protocol("pipeline reply count".into()));
        }
        replies.remove(0)?;
        Ok(replies
            .into_iter()
            .map(|reply| {
                let reply: (String, String) = redis::from_redis_value(reply?)
                    .map_err(|e| QueueError::Protocol(e.to_string()))?;
                EnqueueOutcome::from_reply(reply)
            })
            .collect())
    }

    fn enqueue_invocation<'s>(&'s self, m: &NewMessage<'_>) -> redis::ScriptInvocation<'s> {
        let pnid = m.phone_number_id;
        let mut invocation = scripts::enqueue().prepare_invoke();
        invocation
            .key(keys::queue(pnid))
            .key(keys::record(pnid, m.id.as_str()));
        let fingerprint = match m.idempotency {
            Some(idempotency) => {
                invocation.key(keys::idempotency(pnid, m.client, idempotency.key));
                idempotency.fingerprint
            }
            None => "",
        };
        invocation
            .arg(m.id.as_str())
            .arg(fingerprint)
            .arg(self.record_ttl_ms)
            .arg(keys::IDEMPOTENCY_TTL_MS)
            .arg(m.accepted_at_ms)
            .arg(m.recipient)
            .arg(m.kind)
            .arg(m.graph_body)
            .arg(m.fallback_body.unwrap_or(""))
            .arg(m.sender_name)
            .arg(m.client)
            .arg(m.metadata.unwrap_or(""))
            .arg(history_event("queued", m.accepted_at_ms, None));
        invocation
    }

    /// The record of a message, or `None` if it is unknown or expired.
    pub async fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, QueueError> {
        let key = keys::record(id.phone_number_id(), id.as_str());
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await?;
        MessageRecord::from_fields(id, fields)
    }

    /// Records what became of a delivered message and removes it from the
    /// queue, atomically.
    pub async fn complete(
        &self,
        phone_number_id: &str,
        delivery: &Delivery,
        attempts: u32,
        outcome: Outcome<'_>,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let id = delivery.message_id.as_str();
        let mut invocation;
        match outcome {
            Outcome::Sent { wamid } => {
                invocation = scripts::record_sent().prepare_invoke();
                invocation
                    .key(keys::queue(phone_number_id))
                    .key(keys::record(phone_number_id, id))
                    .key(keys::wamid(phone_number_id, wamid))
                    .arg(keys::CONSUMER_GROUP)
                    .arg(&delivery.entry_id)
                    .arg(id)
                    .arg(wamid)
                    .arg(now_ms)
                    .arg(attempts)
                    .arg(self.record_ttl_ms)
                    .arg(history_event("sent", now_ms, Some(("wamid", wamid))));
            }
            Outcome::Failed {
                code,
                title,
                reason,
            } => {
                invocation = scripts::record_failed().prepare_invoke();
                let event = serde_json::json!({
                    "status": "failed", "at_ms": now_ms, "error_code": code,
                    "error_title": title, "reason": reason,
                })
                .to_string();
                invocation
                    .key(keys::queue(phone_number_id))
                    .key(keys::record(phone_number_id, id))
                    .key(keys::dead_letters(phone_number_id))
                    .arg(keys::CONSUMER_GROUP)
                    .arg(&delivery.entry_id)
                    .arg(id)
                    .arg(code)
                    .arg(title)
                    .arg(now_ms)
                    .arg(attempts)
                    .arg(event)
                    .arg(keys::DEAD_LETTER_MAX_LEN)
                    .arg(&delivery.recipient)
                    .arg(&delivery.kind)
                    .arg(&delivery.body)
                    .arg(reason);
            }
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
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
            "queued" => Ok(Self::Queued),
            "duplicate" => Ok(Self::Duplicate(parse_id()?)),
            "conflict" => Ok(Self::Conflict(parse_id()?)),
            other => Err(QueueError::Protocol(format!("enqueue answered {other:?}"))),
        }
    }
}

/// One entry of a record's history, as JSON.
fn history_event(status: &str, at_ms: i64, extra: Option<(&str, &str)>) -> String {
    let mut event = serde_json::json!({ "status": status, "at_ms": at_ms });
    if let (Some((key, value)), Some(map)) = (extra, event.as_object_mut()) {
        map.insert(key.to_owned(), value.into());
    }
    event.to_string()
}
