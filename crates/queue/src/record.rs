//! A message's record as stored in its hash (see `keys::record`), read back
//! for `GET /messages/{id}`.

use std::collections::HashMap;

use gateway_domain::{MessageId, MessageKind, MessageStatus, Recipient};

use crate::{Delivery, QueueError, fields};

#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: MessageId,
    pub status: MessageStatus,
    pub sender: String,
    pub client: String,
    pub recipient: Recipient,
    pub kind: MessageKind,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub attempts: u32,
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub fallback_used: bool,
    /// JSON object, as the caller gave it.
    pub metadata: Option<String>,
    /// JSON array of `{"status", "at_ms", ...}` events, oldest first.
    pub history: String,
}

impl MessageRecord {
    /// The view of a message still waiting in its queue, before any record exists.
    pub(crate) fn queued(delivery: &Delivery) -> Self {
        let accepted = delivery.message_id.accepted_at_ms();
        Self {
            id: delivery.message_id.clone(),
            status: MessageStatus::Queued,
            sender: delivery.sender.clone(),
            client: delivery.client.clone(),
            recipient: delivery.recipient.clone(),
            kind: delivery.kind,
            created_ms: accepted,
            updated_ms: accepted,
            attempts: 0,
            wamid: None,
            error_code: None,
            error_title: None,
            fallback_used: false,
            metadata: delivery.metadata.clone(),
            history: format!(r#"[{{"status":"queued","at_ms":{accepted}}}]"#),
        }
    }

    pub(crate) fn from_fields(
        id: &MessageId,
        mut values: HashMap<String, String>,
    ) -> Result<Option<Self>, QueueError> {
        if values.is_empty() {
            return Ok(None);
        }
        let mut take = |name: &str| fields::take_text(&mut values, name);
        let bad = |name: &str| QueueError::Protocol(format!("record {id} has a bad {name}"));
        let status = take("status")
            .and_then(|s| MessageStatus::parse(&s))
            .ok_or_else(|| bad("status"))?;
        let number = |value: Option<String>, name: &str| -> Result<i64, QueueError> {
            value.map_or(Ok(0), |v| v.parse().map_err(|_| bad(name)))
        };
        Ok(Some(Self {
            id: id.clone(),
            status,
            created_ms: number(take("created_ms"), "created_ms")?,
            updated_ms: number(take("updated_ms"), "updated_ms")?,
            attempts: u32::try_from(number(take(fields::ATTEMPTS), "attempts")?)
                .map_err(|_| bad("attempts"))?,
            error_code: take("error_code")
                .map(|v| v.parse().map_err(|_| bad("error_code")))
                .transpose()?,
            sender: take(fields::SENDER).unwrap_or_default(),
            client: take(fields::CLIENT).unwrap_or_default(),
            recipient: take(fields::RECIPIENT)
                .and_then(|key| Recipient::from_key(&key))
                .ok_or_else(|| bad("recipient"))?,
            kind: take(fields::KIND)
                .and_then(|kind| MessageKind::parse(&kind))
                .ok_or_else(|| bad("kind"))?,
            wamid: take("wamid"),
            error_title: take("error_title"),
            fallback_used: take(fields::FALLBACK_USED).is_some_and(|v| v == "1"),
            metadata: take(fields::METADATA),
            history: take("history").unwrap_or_else(|| "[]".into()),
        }))
    }
}
