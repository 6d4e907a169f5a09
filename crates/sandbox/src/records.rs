//! The record of accepted sends, kept for tests and the demo to inspect.
//!
//! Records are compact: the request body is kept as the bytes that arrived
//! (shared with the request, not copied) and the wamid as its sequence
//! number; both are turned back into JSON and text only when someone asks.
//! At most `record_limit` records are kept, oldest dropped first, so memory
//! stays bounded under a benchmark's load.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{Direction, Ids};
use crate::locks::lock;

/// One send the sandbox accepted (HTTP 200), as `GET /admin/messages` and
/// `Sandbox::accepted` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcceptedMessage {
    /// When it was accepted; on the wire, Unix milliseconds.
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
    pub phone_number_id: String,
    /// As Meta keys the user: the digits of `to`, or the BSUID in `recipient`.
    pub recipient: String,
    pub message_type: String,
    pub wamid: String,
    pub biz_opaque_callback_data: Option<String>,
    /// The request body as sent.
    pub body: Value,
}

#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) at: SystemTime,
    pub(crate) phone_number_id: Arc<str>,
    pub(crate) recipient: Box<str>,
    pub(crate) sequence: u64,
    pub(crate) body: Bytes,
}

impl Record {
    fn to_accepted(&self, ids: &Ids) -> AcceptedMessage {
        // The body was parsed before it was accepted, so this cannot fail;
        // `Null` is only a guard.
        let body: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        AcceptedMessage {
            at: self.at,
            phone_number_id: self.phone_number_id.to_string(),
            recipient: self.recipient.to_string(),
            message_type: field("type").unwrap_or_else(|| "text".to_owned()),
            wamid: ids.wamid(&self.recipient, self.sequence, Direction::Outbound),
            biz_opaque_callback_data: field("biz_opaque_callback_data"),
            body,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Records {
    limit: usize,
    items: Mutex<VecDeque<Record>>,
}

impl Records {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            items: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn push(&self, record: Record) {
        if self.limit == 0 {
            return;
        }
        let mut items = lock(&self.items);
        if items.len() >= self.limit {
            items.pop_front();
        }
        items.push_back(record);
    }

    /// Accepted sends in order, of one number or of all.
    pub(crate) fn list(&self, phone_number_id: Option<&str>, ids: &Ids) -> Vec<AcceptedMessage> {
        // Copy the matching records out cheaply first (bodies are shared
        // bytes), so the lock is not held while JSON is parsed.
        let matching: Vec<_> = lock(&self.items)
            .iter()
            .filter(|r| phone_number_id.is_none_or(|id| *r.phone_number_id == *id))
            .cloned()
            .collect();
        matching.iter().map(|r| r.to_accepted(ids)).collect()
    }

    pub(crate) fn clear(&self) {
        // Drop the old allocation too: a reset after a benchmark should give
        // the memory back.
        *lock(&self.items) = VecDeque::new();
    }
}

pub(crate) mod unix_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        at: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let millis = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        serializer.serialize_u64(millis)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        let millis = u64::deserialize(deserializer)?;
        Ok(UNIX_EPOCH + Duration::from_millis(millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Random;
    use serde_json::json;

    fn record(number: &str, sequence: u64, body: Value) -> Record {
        Record {
            at: SystemTime::now(),
            phone_number_id: Arc::from(number),
            recipient: "16505551234".into(),
            sequence,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn keeps_the_newest_up_to_the_limit_in_order() {
        let ids = Ids::new(&Random::new(1));
        let records = Records::new(3);
        for i in 0..5 {
            records.push(record("1", i, json!({"type": "text", "n": i})));
        }
        let list = records.list(None, &ids);
        let ns: Vec<_> = list.iter().map(|m| m.body["n"].clone()).collect();
        assert_eq!(ns, [json!(2), json!(3), json!(4)]);
        assert_eq!(
            list[0].wamid,
            ids.wamid("16505551234", 2, Direction::Outbound)
        );
    }

    #[test]
    fn derives_type_and_callback_data_from_the_body_and_filters_by_number() {
        let ids = Ids::new(&Random::new(1));
        let records = Records::new(10);
        records.push(record(
            "1",
            1,
            json!({"text": {"body": "x"}, "biz_opaque_callback_data": "cb"}),
        ));
        records.push(record("2", 2, json!({"type": "template"})));
        let one = records.list(Some("1"), &ids);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].message_type, "text");
        assert_eq!(one[0].biz_opaque_callback_data.as_deref(), Some("cb"));
        assert_eq!(records.list(Some("2"), &ids)[0].message_type, "template");
        records.clear();
        assert!(records.list(None, &ids).is_empty());
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let records = Records::new(0);
        records.push(record("1", 1, json!({})));
        assert!(records.list(None, &Ids::new(&Random::new(1))).is_empty());
    }

    #[test]
    fn serializes_at_as_unix_millis_and_reads_it_back() {
        let message = AcceptedMessage {
            at: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_749_416_383_123),
            phone_number_id: "1".into(),
            recipient: "2".into(),
            message_type: "text".into(),
            wamid: "wamid.x".into(),
            biz_opaque_callback_data: None,
            body: json!({}),
        };
        let value = serde_json::to_value(&message).expect("serializes");
        assert_eq!(value["at"], 1_749_416_383_123u64);
        assert_eq!(
            serde_json::from_value::<AcceptedMessage>(value).expect("deserializes"),
            message
        );
    }
}
