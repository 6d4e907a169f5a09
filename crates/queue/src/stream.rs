//! Reading a sender's queue stream through the `workers` consumer group, and
//! measuring it.

use std::borrow::Cow;

use gateway_domain::templates::TemplateCategory;
use gateway_domain::{Lane, MessageId, MessageKind, Recipient};
use redis::Value;
use redis::streams::{StreamId, StreamRangeReply};

use crate::{Queue, QueueError, fields, keys};

/// One message handed to a worker: what it needs to call the Graph API and
/// to record the outcome.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream the entry was read from.
    pub lane: Lane,
    /// The stream entry id, to acknowledge.
    pub entry_id: String,
    pub message_id: MessageId,
    pub sender: String,
    pub client: String,
    pub recipient: Recipient,
    pub kind: MessageKind,
    /// The Graph API body without `biz_opaque_callback_data`.
    body: String,
    /// The same for the caller's fallback template.
    fallback: Option<String>,
    pub metadata: Option<String>,
    /// Not to be sent after this (Unix ms).
    pub expires_at_ms: Option<i64>,
    /// Where its status events are POSTed.
    pub callback_url: Option<String>,
    /// A template message's category, from the WABA's template registry
    /// at `/send`; `None` for other messages, or when the registry did not
    /// know the template (never synced).
    pub template_category: Option<TemplateCategory>,
    /// The same for the caller's fallback template.
    pub fallback_category: Option<TemplateCategory>,
    /// What was done before it was queued again after an asynchronous
    /// failure (zero for a new message).
    pub prior: crate::Progress,
    /// When it became due (Unix ms), if not when it was accepted: its
    /// `send_after`, or its replay from the dead letters.
    due_ms: Option<i64>,
}

/// How far behind a sender is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Entries not yet done (waiting or in flight), in both streams.
    pub length: u64,
    /// Of them, in the transactional and in the bulk stream.
    pub transactional: u64,
    pub bulk: u64,
    /// When the oldest of them was queued (Unix ms), if any.
    pub oldest_ms: Option<i64>,
}

impl Queue {
    /// Creates the sender's streams and consumer group if they do not
    /// exist. The group starts at the beginning, so messages queued before
    /// the first worker came up are read too.
    pub async fn ensure_group(&self, phone_number_id: &str) -> Result<(), QueueError> {
        for stream in [keys::queue(phone_number_id), keys::bulk(phone_number_id)] {
            self.create_group(&stream).await?;
        }
        Ok(())
    }

    /// Creates `stream` and the `workers` group on it, reading from the
    /// start; one that exists already is left as it is.
    pub(crate) async fn create_group(&self, stream: &str) -> Result<(), QueueError> {
        crate::consumer::create_group(&self.conn, stream, keys::CONSUMER_GROUP).await
    }

    /// Acknowledges and deletes an entry that is not a message this gateway
    /// wrote, so it cannot block the queue.
    pub async fn discard(
        &self,
        phone_number_id: &str,
        lane: Lane,
        entry_id: &str,
    ) -> Result<(), QueueError> {
        let key = keys::stream(phone_number_id, lane);
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

    /// The number of entries not yet done in both streams and the age of the oldest.
    pub async fn depth(&self, phone_number_id: &str) -> Result<QueueDepth, QueueError> {
        let mut pipe = redis::pipe();
        for key in [keys::queue(phone_number_id), keys::bulk(phone_number_id)] {
            pipe.cmd("XLEN")
                .arg(&key)
                .cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let (tx_len, tx_oldest, bulk_len, bulk_oldest): (
            u64,
            StreamRangeReply,
            u64,
            StreamRangeReply,
        ) = pipe.query_async(&mut self.conn.clone()).await?;
        let oldest_ms = tx_oldest
            .ids
            .iter()
            .chain(&bulk_oldest.ids)
            .filter_map(|entry| entry.id.split_once('-').and_then(|(ms, _)| ms.parse().ok()))
            .min();
        Ok(QueueDepth {
            length: tx_len + bulk_len,
            transactional: tx_len,
            bulk: bulk_len,
            oldest_ms,
        })
    }
}

impl Delivery {
    /// The message a stream entry holds; `Err(entry id)` for an entry this
    /// gateway did not write.
    pub fn from_entry(phone_number_id: &str, lane: Lane, entry: StreamId) -> Result<Self, String> {
        let entry_id = entry.id;
        let mut map = entry.map;
        // Each value is taken out of the reply, not copied; under its
        // name, or the one it had before (see `fields`).
        let mut text = |name: &str| -> Option<String> {
            let value = map
                .remove(name)
                .or_else(|| map.remove(fields::legacy_name(name)?))?;
            match value {
                Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
                Value::SimpleString(s) => Some(s),
                _ => None,
            }
        };
        let parsed = (|| {
            let message_id = match text(fields::ID) {
                Some(id) => MessageId::parse(&id)?,
                None => MessageId::new(phone_number_id, lane, &entry_id)?,
            };
            let body = text(fields::BODY)?;
            // The body is a JSON object the api rendered; anything else was not written by us.
            body.ends_with('}').then_some(())?;
            Some(Self {
                lane,
                entry_id: entry_id.clone(),
                message_id,
                sender: text(fields::SENDER)?,
                client: text(fields::CLIENT)?,
                recipient: Recipient::from_key(&text(fields::RECIPIENT)?)?,
                kind: MessageKind::parse(&text(fields::KIND)?)?,
                body,
                fallback: text(fields::FALLBACK).filter(|b| b.ends_with('}')),
                metadata: text(fields::METADATA),
                expires_at_ms: text(fields::EXPIRES).and_then(|e| e.parse().ok()),
                callback_url: text(fields::CALLBACK),
                template_category: text(fields::TEMPLATE_CATEGORY)
                    .and_then(|c| TemplateCategory::parse(&c)),
                fallback_category: text(fields::FALLBACK_CATEGORY)
                    .and_then(|c| TemplateCategory::parse(&c)),
                prior: crate::Progress {
                    attempts: text(fields::ATTEMPTS)
                        .and_then(|a| a.parse().ok())
                        .unwrap_or(0),
                    fallback_used: text(fields::FALLBACK_USED).is_some_and(|f| f == "1"),
                },
                due_ms: text(fields::DUE).and_then(|d| d.parse().ok()),
            })
        })();
        parsed.ok_or(entry_id)
    }

    /// When the message became due (Unix ms): accepted, or later, its
    /// `send_after` or its replay. Its age (`max_age`) counts from then.
    pub fn due_ms(&self) -> i64 {
        self.due_ms
            .unwrap_or_else(|| self.message_id.accepted_at_ms())
    }

    /// The Graph API body to POST, carrying the message id in
    /// `biz_opaque_callback_data` so status webhooks find the message.
    pub fn graph_body(&self) -> String {
        with_callback_data(&self.body, &self.message_id)
    }

    /// The fallback template's body to POST, if the caller gave one.
    pub fn fallback_body(&self) -> Option<String> {
        self.fallback
            .as_deref()
            .map(|b| with_callback_data(b, &self.message_id))
    }

    /// Whether the caller gave a fallback template.
    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    /// `body` (rendered elsewhere, e.g. the sender's default fallback) with
    /// this message's id as `biz_opaque_callback_data`.
    pub fn with_callback_data(&self, body: &str) -> String {
        with_callback_data(body, &self.message_id)
    }

    /// The entry's fields, to keep a copy (dead letters) that can be queued again.
    pub(crate) fn entry_fields(&self) -> Vec<(&'static str, String)> {
        [
            Some((fields::SENDER, self.sender.clone())),
            Some((fields::CLIENT, self.client.clone())),
            Some((fields::RECIPIENT, self.recipient.key().to_owned())),
            Some((fields::KIND, self.kind.as_str().to_owned())),
            Some((fields::BODY, self.body.clone())),
            self.fallback.clone().map(|f| (fields::FALLBACK, f)),
            self.metadata.clone().map(|m| (fields::METADATA, m)),
            self.expires_at_ms.map(|e| (fields::EXPIRES, e.to_string())),
            self.callback_url.clone().map(|c| (fields::CALLBACK, c)),
            self.template_category
                .map(|c| (fields::TEMPLATE_CATEGORY, c.as_str().to_owned())),
            self.fallback_category
                .map(|c| (fields::FALLBACK_CATEGORY, c.as_str().to_owned())),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The fields a message's record is created with. Each is written with
    /// every outcome and kept for days, so an optional one the message
    /// lacks is left out (readers take a missing field as empty). The
    /// bodies are kept until Meta reports the message delivered, so that an
    /// asynchronous failure can be retried (see `status_events`).
    pub(crate) fn record_fields(&self) -> impl Iterator<Item = (&'static str, Cow<'_, str>)> {
        fn borrowed<'a>(
            name: &'static str,
            value: Option<&'a str>,
        ) -> Option<(&'static str, Cow<'a, str>)> {
            value.map(|v| (name, Cow::Borrowed(v)))
        }
        let accepted_ms = self.message_id.accepted_at_ms();
        let due_ms = self.due_ms();
        [
            borrowed(fields::SENDER, Some(self.sender.as_str())),
            borrowed(fields::CLIENT, Some(self.client.as_str())),
            borrowed(fields::RECIPIENT, Some(self.recipient.key())),
            borrowed(fields::KIND, Some(self.kind.as_str())),
            borrowed(fields::LANE, Some(self.lane.code())),
            Some(("created_ms", Cow::Owned(accepted_ms.to_string()))),
            // Readers take a missing due time as the acceptance.
            (due_ms != accepted_ms).then(|| (fields::DUE, Cow::Owned(due_ms.to_string()))),
            borrowed(fields::METADATA, self.metadata.as_deref()),
            borrowed(fields::CALLBACK, self.callback_url.as_deref()),
            borrowed(fields::BODY, Some(self.body.as_str())),
            borrowed(fields::FALLBACK, self.fallback.as_deref()),
            borrowed(
                fields::TEMPLATE_CATEGORY,
                self.template_category.map(TemplateCategory::as_str),
            ),
            borrowed(
                fields::FALLBACK_CATEGORY,
                self.fallback_category.map(TemplateCategory::as_str),
            ),
            self.expires_at_ms
                .map(|e| (fields::EXPIRES, Cow::Owned(e.to_string()))),
        ]
        .into_iter()
        .flatten()
    }
}

/// `{...}` + the id: the body is an object we rendered and the id holds only
/// digits and dashes, so no JSON escaping is needed.
fn with_callback_data(body: &str, id: &MessageId) -> String {
    let open = body.strip_suffix('}').unwrap_or(body);
    let separator = if open.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!("{open}{separator}\"biz_opaque_callback_data\":\"{id}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_rides_in_the_callback_data() {
        let id = MessageId::new("1", Lane::Transactional, "2-3").expect("id");
        let body: serde_json::Value =
            serde_json::from_str(&with_callback_data(r#"{"to":"+1","type":"text"}"#, &id))
                .expect("json");
        assert_eq!(body["biz_opaque_callback_data"], "1-2-3");
        assert_eq!(body["to"], "+1");
        let empty: serde_json::Value =
            serde_json::from_str(&with_callback_data("{}", &id)).expect("json");
        assert_eq!(empty["biz_opaque_callback_data"], "1-2-3");
    }

    /// An entry this gateway wrote holds a recipient in its canonical form
    /// and a known kind; anything else is not taken for a message.
    #[test]
    fn an_entry_is_a_message_only_with_a_canonical_recipient_and_a_known_kind() {
        let entry = |recipient: &str, kind: &str| {
            let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
            StreamId {
                id: "1700000000000-0".into(),
                map: [
                    ("snd", "s0"),
                    ("cli", "billing"),
                    ("rcpt", recipient),
                    ("kind", kind),
                    ("body", "{}"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), text(v)))
                .collect(),
                ..StreamId::default()
            }
        };
        let read = |recipient: &str, kind: &str| {
            Delivery::from_entry("1", Lane::Transactional, entry(recipient, kind))
        };
        let delivery = read("+16505551234", "template").expect("a message");
        assert_eq!(delivery.recipient.key(), "+16505551234");
        assert_eq!(delivery.kind, MessageKind::Template);
        assert!(read("US.13491208655302741918", "text").is_ok());
        assert_eq!(
            read("16505551234", "template").err().as_deref(),
            Some("1700000000000-0")
        );
        assert!(read("+16505551234", "fax").is_err());
    }

    /// A record is written with every outcome and kept for days: an
    /// optional field the message lacks is left out (readers take it as
    /// empty), and so is a due time that is the acceptance.
    #[test]
    fn a_record_holds_only_the_fields_the_message_has() {
        let entry = |extra: &[(&str, &str)]| {
            let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
            let base = [
                ("snd", "s0"),
                ("cli", "billing"),
                ("rcpt", "+16505551234"),
                ("kind", "template"),
                ("body", "{}"),
            ];
            StreamId {
                id: "1700000000000-0".into(),
                map: base
                    .iter()
                    .chain(extra)
                    .map(|(k, v)| ((*k).to_owned(), text(v)))
                    .collect(),
                ..StreamId::default()
            }
        };
        let names = |extra: &[(&str, &str)]| -> Vec<&'static str> {
            let delivery =
                Delivery::from_entry("1", Lane::Transactional, entry(extra)).expect("a message");
            delivery.record_fields().map(|(name, _)| name).collect()
        };
        assert_eq!(
            names(&[]),
            ["snd", "cli", "rcpt", "kind", "lane", "created_ms", "body"]
        );
        let full = names(&[
            ("meta", "{}"),
            ("cb", "https://example.com/cb"),
            ("fb", "{}"),
            ("exp", "1700000060000"),
            ("tc", "UTILITY"),
            ("ftc", "UTILITY"),
            ("due_ms", "1700000030000"),
        ]);
        for name in ["meta", "cb", "fb", "exp", "tc", "ftc", "due_ms"] {
            assert!(full.contains(&name), "{name} missing from {full:?}");
        }
    }
}
