//! The durable queue: everything the gateway keeps in Redis, behind a small
//! typed API. One stream per sender holds the messages waiting to be sent; a
//! hash per message holds its record; scripts change them together so that
//! every step (accept, sent, failed) is all-or-nothing. Key layout: [`keys`].
//!
//! Guarantees: `enqueue` returns `Queued` only after Redis has stored the
//! entry, the record and the idempotency key; a stream entry leaves the
//! queue only in the same step that records the message's outcome.

mod connection;
mod dead_letters;
mod entry;
mod error;
pub mod keys;
mod leases;
mod outcome;
mod record;
mod scripts;
mod stream;

pub use connection::connect;
pub use dead_letters::{DeadLetter, DeadLetterFilter};
pub use error::QueueError;
pub use leases::RetryState;
pub use outcome::{Outcome, Progress};
pub use record::MessageRecord;
pub use stream::{Delivery, QueueDepth};

use std::collections::HashMap;

use gateway_domain::MessageId;
use redis::aio::ConnectionManager;

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
    /// Stores one message in one round trip: a plain XADD, or with an
    /// idempotency key a script that checks and sets the key with it.
    pub async fn enqueue(&self, message: &NewMessage<'_>) -> Result<EnqueueOutcome, QueueError> {
        let mut conn = self.conn.clone();
        match message.idempotency {
            None => {
                let entry_id: String = entry::xadd(message).query_async(&mut conn).await?;
                queued(message.phone_number_id, &entry_id)
            }
            Some(idempotency) => {
                let reply: (String, String) = idempotent_invocation(message, idempotency)
                    .invoke_async(&mut conn)
                    .await?;
                EnqueueOutcome::from_reply(reply)
            }
        }
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
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(scripts::ENQUEUE_IDEMPOTENT_SOURCE);
        for message in messages {
            match message.idempotency {
                None => pipe.add_command(entry::xadd(message)),
                Some(idempotency) => {
                    pipe.invoke_script(&idempotent_invocation(message, idempotency))
                }
            };
        }
        let mut replies: Vec<redis::RedisResult<redis::Value>> =
            pipe.query_async(&mut self.conn.clone()).await?;
        if replies.len() != messages.len() + 1 {
            return Err(QueueError::Protocol("pipeline reply count".into()));
        }
        replies.remove(0)?;
        Ok(replies
            .into_iter()
            .zip(messages)
            .map(|(reply, message)| {
                let reply = reply?;
                let protocol = |e: redis::ParsingError| QueueError::Protocol(e.to_string());
                match message.idempotency {
                    None => queued(
                        message.phone_number_id,
                        &redis::from_redis_value::<String>(reply).map_err(protocol)?,
                    ),
                    Some(_) => EnqueueOutcome::from_reply(
                        redis::from_redis_value(reply).map_err(protocol)?,
                    ),
                }
            })
            .collect())
    }

    /// The record of a message, or `None` if it is unknown or expired. A
    /// message no worker has touched yet has no record: it is read from its
    /// stream entry.
    pub async fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, QueueError> {
        let pnid = id.phone_number_id();
        let (fields, entries): (HashMap<String, String>, redis::streams::StreamRangeReply) =
            redis::pipe()
                .cmd("HGETALL")
                .arg(keys::record(pnid, id.as_str()))
                .cmd("XRANGE")
                .arg(keys::queue(pnid))
                .arg(id.entry_id())
                .arg(id.entry_id())
                .query_async(&mut self.conn.clone())
                .await?;
        if !fields.is_empty() {
            return MessageRecord::from_fields(id, fields);
        }
        Ok(entries
            .ids
            .into_iter()
            .next()
            .and_then(|entry| Delivery::from_entry(pnid, entry).ok())
            .filter(|delivery| &delivery.message_id == id)
            .map(|delivery| MessageRecord::queued(&delivery)))
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

fn queued(phone_number_id: &str, entry_id: &str) -> Result<EnqueueOutcome, QueueError> {
    MessageId::new(phone_number_id, entry_id)
        .map(EnqueueOutcome::Queued)
        .ok_or_else(|| QueueError::Protocol(format!("XADD answered {entry_id:?}")))
}

fn idempotent_invocation(
    message: &NewMessage<'_>,
    idempotency: Idempotency<'_>,
) -> redis::ScriptInvocation<'static> {
    let pnid = message.phone_number_id;
    let mut invocation = scripts::enqueue_idempotent().prepare_invoke();
    invocation
        .key(keys::queue(pnid))
        .key(keys::idempotency(pnid, message.client, idempotency.key))
        .arg(pnid)
        .arg(idempotency.fingerprint)
        .arg(keys::IDEMPOTENCY_TTL_MS);
    for (field, value) in entry::fields(message) {
        invocation.arg(field).arg(value);
    }
    invocation
}

/// One entry of a record's history, as JSON.
pub(crate) fn history_event(status: &str, at_ms: i64, extra: Option<(&str, &str)>) -> String {
    let mut event = serde_json::json!({ "status": status, "at_ms": at_ms });
    if let (Some((key, value)), Some(map)) = (extra, event.as_object_mut()) {
        map.insert(key.to_owned(), value.into());
    }
    event.to_string()
}
