//! Meta's read receipts and typing indicator: a `POST
//! /{version}/{phone_number_id}/messages` whose body is `{"messaging_product":
//! "whatsapp", "status": "read", "message_id": "<inbound wamid>"}`, with an
//! optional `"typing_indicator": {"type": "text"}`. Meta answers
//! `{"success": true}`. The sandbox accepts only ids of inbound messages it
//! delivered to that number (an unknown one is error 100), counts the call
//! against the number's throughput as Meta does, and keeps each receipt for
//! the tests ([`ReadReceipt`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::errors::MetaError;
use crate::locks::lock;

/// Inbound ids remembered for receipts; the oldest are forgotten beyond.
const INBOUND_REMEMBERED: usize = 100_000;

/// One read receipt the sandbox accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadReceipt {
    /// When it was accepted; on the wire, Unix milliseconds.
    #[serde(with = "crate::records::unix_millis")]
    pub at: SystemTime,
    pub phone_number_id: String,
    pub message_id: String,
    /// The typing indicator was asked for too.
    pub typing: bool,
}

#[derive(Debug, Default)]
pub(crate) struct ReadReceipts {
    /// Inbound wamid → the number that received it; oldest first in `order`.
    inbound: Mutex<(HashMap<String, String>, VecDeque<String>)>,
    accepted: Mutex<Vec<ReadReceipt>>,
}

/// Whether a request body is a read receipt rather than a message.
pub(crate) fn is_receipt(request: &Value) -> bool {
    request.get("status").is_some()
}

/// The message id and whether typing was asked, or Meta's error.
pub(crate) fn parse(request: &Value) -> Result<(&str, bool), MetaError> {
    if request.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(MetaError::invalid_parameter(
            "messaging_product must be whatsapp",
        ));
    }
    if request.get("status").and_then(Value::as_str) != Some("read") {
        return Err(MetaError::invalid_parameter("status must be read"));
    }
    let message_id = request
        .get("message_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| MetaError::missing_parameter("message_id is required"))?;
    let typing = match request.get("typing_indicator") {
        None => false,
        Some(indicator) if indicator.get("type").and_then(Value::as_str) == Some("text") => true,
        Some(_) => {
            return Err(MetaError::invalid_parameter(
                "typing_indicator.type must be text",
            ));
        }
    };
    Ok((message_id, typing))
}

/// Meta's answer to an accepted receipt.
pub(crate) fn success() -> Value {
    json!({ "success": true })
}

impl ReadReceipts {
    /// An inbound message `wamid` reached `phone_number_id`.
    pub(crate) fn delivered(&self, phone_number_id: &str, wamid: &str) {
        let mut guard = lock(&self.inbound);
        let (ids, order) = &mut *guard;
        ids.insert(wamid.to_owned(), phone_number_id.to_owned());
        order.push_back(wamid.to_owned());
        while order.len() > INBOUND_REMEMBERED {
            if let Some(oldest) = order.pop_front() {
                ids.remove(&oldest);
            }
        }
    }

    /// Whether `phone_number_id` received the inbound message `wamid`.
    pub(crate) fn received(&self, phone_number_id: &str, wamid: &str) -> bool {
        lock(&self.inbound).0.get(wamid).map(String::as_str) == Some(phone_number_id)
    }

    pub(crate) fn accept(&self, receipt: ReadReceipt) {
        lock(&self.accepted).push(receipt);
    }

    pub(crate) fn accepted(&self) -> Vec<ReadReceipt> {
        lock(&self.accepted).clone()
    }

    pub(crate) fn clear(&self) {
        lock(&self.accepted).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_names_an_inbound_message_and_may_ask_for_typing() {
        let body =
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A"});
        assert!(is_receipt(&body));
        assert_eq!(parse(&body).ok(), Some(("wamid.A", false)));
        let mut typing = body.clone();
        typing["typing_indicator"] = json!({"type": "text"});
        assert_eq!(parse(&typing).ok(), Some(("wamid.A", true)));
        typing["typing_indicator"] = json!({"type": "audio"});
        assert_eq!(parse(&typing).err().map(|e| e.code), Some(100));
        let mut unread = body.clone();
        unread["status"] = json!("delivered");
        assert_eq!(parse(&unread).err().map(|e| e.code), Some(100));
        let no_id = json!({"messaging_product": "whatsapp", "status": "read"});
        assert_eq!(parse(&no_id).err().map(|e| e.code), Some(131_008));
        assert!(!is_receipt(
            &json!({"messaging_product": "whatsapp", "to": "1"})
        ));
    }

    #[test]
    fn only_a_number_that_received_a_message_may_mark_it_read() {
        let receipts = ReadReceipts::default();
        receipts.delivered("1", "wamid.A");
        assert!(receipts.received("1", "wamid.A"));
        assert!(!receipts.received("2", "wamid.A"));
        assert!(!receipts.received("1", "wamid.B"));
    }
}
