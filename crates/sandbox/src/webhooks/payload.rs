//! Webhook bodies as Meta sends them: the `whatsapp_business_account`
//! envelope with one `messages` change per POST, holding either `statuses`
//! (several when batched) or an inbound message with its `contacts`.
//!
//! Bodies are encoded the way Meta encodes them: non-ASCII characters are
//! escaped as `\uXXXX`, so a receiver that verifies a re-serialisation
//! instead of the raw bytes fails here as it would in production.

use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Map, Value, json};

use crate::config::NumberConfig;
use crate::errors::MetaError;
use crate::rules::conversation::Conversation;
use crate::user_id::UserId;

/// How Meta prices a message, echoed in its statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pricing {
    pub(crate) billable: bool,
    /// `regular` or `free_customer_service`.
    pub(crate) kind: &'static str,
    /// `marketing`, `utility`, `authentication` or `service`.
    pub(crate) category: String,
    /// Under conversation-based pricing (`StatusConfig::conversations`,
    /// webhook versions before v24): the conversation the message belongs
    /// to. Its statuses then say `pricing_model: CBP` and carry a
    /// `conversation` object; otherwise `PMP` and none, as Meta sends today.
    pub(crate) conversation: Option<Conversation>,
}

impl Pricing {
    /// Per-message pricing: templates are billed by their category, except
    /// a utility template sent while the user's customer-service window is
    /// open (`in_window`); free-form replies inside the window are free.
    pub(crate) fn for_message(template_category: Option<&str>, in_window: bool) -> Self {
        let free = |category: &str| Self {
            billable: false,
            kind: "free_customer_service",
            category: category.to_owned(),
            conversation: None,
        };
        match template_category {
            Some(category) if in_window && category.eq_ignore_ascii_case("utility") => {
                free("utility")
            }
            Some(category) => Self {
                billable: true,
                kind: "regular",
                category: category.to_ascii_lowercase(),
                conversation: None,
            },
            None => free("service"),
        }
    }
}

/// What every status of one accepted send reports about it.
#[derive(Debug)]
pub(crate) struct SentMessage {
    pub(crate) number: Arc<NumberConfig>,
    pub(crate) wamid: String,
    pub(crate) user: UserId,
    pub(crate) biz_opaque_callback_data: Option<String>,
    pub(crate) pricing: Pricing,
    /// Set when the send ends in a `failed` status.
    pub(crate) failure: Option<MetaError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl StatusKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug)]
pub(crate) struct StatusEvent {
    pub(crate) message: Arc<SentMessage>,
    pub(crate) kind: StatusKind,
    /// When the status happened, which is what its `timestamp` says even if
    /// it is posted later or out of order.
    pub(crate) at: SystemTime,
}

/// A simulated user's text message.
#[derive(Debug)]
pub(crate) struct InboundMessage {
    pub(crate) number: Arc<NumberConfig>,
    pub(crate) wamid: String,
    pub(crate) user: UserId,
    /// The text, or a media message's caption (empty: none).
    pub(crate) text: String,
    /// A media message's file, as Meta describes it.
    pub(crate) media: Option<InboundMedia>,
    pub(crate) at: SystemTime,
}

/// The file of an inbound media message: the webhook carries its `id`,
/// `mime_type` and `sha256` under the message's type (`image`, ...).
#[derive(Clone, Debug)]
pub(crate) struct InboundMedia {
    /// `image`, `audio`, `video`, `document` or `sticker`.
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) mime_type: String,
    pub(crate) sha256: String,
}

/// The name a simulated user shows in `contacts[].profile`.
const PROFILE_NAME: &str = "Sandbox User";

fn unix_seconds(at: SystemTime) -> String {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

fn envelope(number: &NumberConfig, mut value: Map<String, Value>) -> Value {
    let mut fields = Map::with_capacity(value.len() + 2);
    fields.insert("messaging_product".into(), json!("whatsapp"));
    fields.insert(
        "metadata".into(),
        json!({
            "display_phone_number": number.display_phone_number,
            "phone_number_id": number.phone_number_id,
        }),
    );
    fields.append(&mut value);
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": number.waba_id,
            "changes": [{"field": "messages", "value": fields}],
        }],
    })
}

fn status(event: &StatusEvent) -> Value {
    let message = &event.message;
    let mut status = json!({
        "id": message.wamid,
        "status": event.kind.as_str(),
        "timestamp": unix_seconds(event.at),
        "recipient_id": message.user.key(),
    });
    if message.user.is_scoped() {
        status["recipient_user_id"] = json!(message.user.key());
    }
    if let Some(data) = &message.biz_opaque_callback_data {
        status["biz_opaque_callback_data"] = json!(data);
    }
    match (&message.failure, event.kind) {
        (Some(error), StatusKind::Failed) => status["errors"] = json!([error.status_error()]),
        _ => {
            let pricing = &message.pricing;
            match &pricing.conversation {
                None => {
                    status["pricing"] = json!({
                        "billable": pricing.billable,
                        "pricing_model": "PMP",
                        "type": pricing.kind,
                        "category": pricing.category,
                    });
                }
                Some(conversation) => {
                    status["pricing"] = json!({
                        "billable": pricing.billable,
                        "pricing_model": "CBP",
                        "category": pricing.category,
                    });
                    let mut object = json!({
                        "id": conversation.id,
                        "origin": {"type": pricing.category},
                    });
                    // Meta dates the conversation on its `sent` statuses.
                    if event.kind == StatusKind::Sent {
                        object["expiration_timestamp"] = json!(unix_seconds(conversation.expires));
                    }
                    status["conversation"] = object;
                }
            }
        }
    }
    status
}

/// One POST's body with statuses of one number, in the order given.
pub(crate) fn statuses(number: &NumberConfig, events: &[StatusEvent]) -> Value {
    let statuses = events.iter().map(status).collect();
    envelope(
        number,
        Map::from_iter([("statuses".to_owned(), Value::Array(statuses))]),
    )
}

pub(crate) fn inbound(message: &InboundMessage) -> Value {
    let mut contact = json!({"profile": {"name": PROFILE_NAME}});
    let mut text = match &message.media {
        None => json!({
            "id": message.wamid,
            "timestamp": unix_seconds(message.at),
            "type": "text",
            "text": {"body": message.text},
        }),
        Some(media) => {
            let mut object = json!({
                "id": media.id,
                "mime_type": media.mime_type,
                "sha256": media.sha256,
            });
            if !message.text.is_empty() {
                object["caption"] = json!(message.text);
            }
            let mut inbound = json!({
                "id": message.wamid,
                "timestamp": unix_seconds(message.at),
                "type": media.kind,
            });
            inbound[media.kind] = object;
            inbound
        }
    };
    match &message.user {
        UserId::Phone(digits) => {
            contact["wa_id"] = json!(digits);
            text["from"] = json!(digits);
        }
        UserId::Scoped(id) => {
            contact["user_id"] = json!(id);
            text["from_user_id"] = json!(id);
        }
    }
    envelope(
        &message.number,
        Map::from_iter([
            ("contacts".to_owned(), json!([contact])),
            ("messages".to_owned(), json!([text])),
        ]),
    )
}

/// The exact bytes that are signed and sent.
pub(crate) fn encode(value: &Value) -> Bytes {
    let mut bytes = Vec::with_capacity(512);
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, AsciiFormatter);
    match value.serialize(&mut serializer) {
        Ok(()) => Bytes::from(bytes),
        // Writing a `Value` into memory cannot fail; plain JSON is still valid.
        Err(_) => Bytes::from(value.to_string()),
    }
}

/// Compact JSON with every non-ASCII character escaped, as Meta writes it.
struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (index, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..index])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = index + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number() -> Arc<NumberConfig> {
        let mut number = NumberConfig::new("106540352242922", "102290129340398", "t");
        number.display_phone_number = "15550783881".into();
        Arc::new(number)
    }

    fn at() -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(1_749_416_383)
    }

    fn message(failure: Option<MetaError>) -> Arc<SentMessage> {
        Arc::new(SentMessage {
            number: number(),
            wamid: "wamid.A".into(),
            user: UserId::Phone("16505551234".into()),
            biz_opaque_callback_data: Some("cb-1".into()),
            pricing: Pricing::for_message(Some("MARKETING"), false),
            failure,
        })
    }

    #[test]
    fn a_utility_template_in_an_open_window_and_a_reply_are_free() {
        let utility = Pricing::for_message(Some("UTILITY"), true);
        assert!(!utility.billable);
        assert_eq!(
            (utility.kind, utility.category.as_str()),
            ("free_customer_service", "utility")
        );
        let outside = Pricing::for_message(Some("UTILITY"), false);
        assert!(outside.billable);
        assert_eq!(outside.kind, "regular");
        assert!(Pricing::for_message(Some("MARKETING"), true).billable);
        let reply = Pricing::for_message(None, true);
        assert!(!reply.billable);
        assert_eq!(reply.category, "service");
    }

    #[test]
    fn under_conversation_pricing_statuses_name_their_conversation() {
        let mut pricing = Pricing::for_message(Some("UTILITY"), false);
        pricing.conversation = Some(crate::rules::conversation::Conversations::default().join(
            "n",
            "u",
            "utility",
            std::time::Instant::now(),
            at(),
            || "c0ffee".into(),
        ));
        let message = Arc::new(SentMessage {
            number: number(),
            wamid: "wamid.A".into(),
            user: UserId::Phone("16505551234".into()),
            biz_opaque_callback_data: None,
            pricing,
            failure: None,
        });
        let events = [StatusKind::Sent, StatusKind::Delivered].map(|kind| StatusEvent {
            message: Arc::clone(&message),
            kind,
            at: at(),
        });
        let body = statuses(&number(), &events);
        let listed = &body["entry"][0]["changes"][0]["value"]["statuses"];
        assert_eq!(
            listed[0]["conversation"],
            json!({"id": "c0ffee", "origin": {"type": "utility"},
                   "expiration_timestamp": "1749502783"})
        );
        assert_eq!(
            listed[1]["conversation"],
            json!({"id": "c0ffee", "origin": {"type": "utility"}})
        );
        assert_eq!(
            listed[1]["pricing"],
            json!({"billable": true, "pricing_model": "CBP", "category": "utility"})
        );
    }

    #[test]
    fn status_webhook_has_metas_envelope_and_fields() {
        let events = [
            StatusEvent {
                message: message(None),
                kind: StatusKind::Sent,
                at: at(),
            },
            StatusEvent {
                message: message(None),
                kind: StatusKind::Read,
                at: at(),
            },
        ];
        assert_eq!(
            statuses(&number(), &events),
            json!({
                "object": "whatsapp_business_account",
                "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "statuses": [
                        {"id": "wamid.A", "status": "sent", "timestamp": "1749416383", "recipient_id": "16505551234",
                         "biz_opaque_callback_data": "cb-1",
                         "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"}},
                        {"id": "wamid.A", "status": "read", "timestamp": "1749416383", "recipient_id": "16505551234",
                         "biz_opaque_callback_data": "cb-1",
                         "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"}}
                    ]
                }}]}]
            })
        );
    }

    #[test]
    fn failed_status_carries_errors_and_no_pricing() {
        let event = StatusEvent {
            message: message(Some(MetaError::undeliverable())),
            kind: StatusKind::Failed,
            at: at(),
        };
        let body = statuses(&number(), &[event]);
        let status = &body["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!(status["status"], "failed");
        assert_eq!(status["errors"][0]["code"], 131026);
        assert!(status.get("pricing").is_none());
    }

    #[test]
    fn inbound_webhook_names_the_user_by_phone_or_bsuid() {
        let mut inbound_message = InboundMessage {
            number: number(),
            wamid: "wamid.B".into(),
            user: UserId::Phone("16505551234".into()),
            text: "hello".into(),
            media: None,
            at: at(),
        };
        let value = &inbound(&inbound_message)["entry"][0]["changes"][0]["value"];
        assert_eq!(
            value["contacts"],
            json!([{"profile": {"name": "Sandbox User"}, "wa_id": "16505551234"}])
        );
        assert_eq!(
            value["messages"],
            json!([{"from": "16505551234", "id": "wamid.B", "timestamp": "1749416383", "type": "text", "text": {"body": "hello"}}])
        );

        inbound_message.user = UserId::Scoped("US.1349".into());
        let value = &inbound(&inbound_message)["entry"][0]["changes"][0]["value"];
        assert_eq!(value["contacts"][0]["user_id"], "US.1349");
        assert_eq!(value["messages"][0]["from_user_id"], "US.1349");
        assert!(value["messages"][0].get("from").is_none());
    }

    #[test]
    fn an_inbound_image_carries_its_id_type_and_hash() {
        let message = InboundMessage {
            number: number(),
            wamid: "wamid.C".into(),
            user: UserId::Phone("16505551234".into()),
            text: "look".into(),
            media: Some(InboundMedia {
                kind: "image",
                id: "1037543291543636".into(),
                mime_type: "image/jpeg".into(),
                sha256: "ab12".into(),
            }),
            at: at(),
        };
        let value = &inbound(&message)["entry"][0]["changes"][0]["value"];
        assert_eq!(
            value["messages"][0],
            json!({"from": "16505551234", "id": "wamid.C", "timestamp": "1749416383", "type": "image",
                   "image": {"id": "1037543291543636", "mime_type": "image/jpeg", "sha256": "ab12", "caption": "look"}})
        );
    }

    #[test]
    fn encoding_escapes_non_ascii_like_meta() {
        let bytes = encode(&json!({"text": "Olá 😀 \"q\""}));
        assert_eq!(&bytes[..], br#"{"text":"Ol\u00e1 \ud83d\ude00 \"q\""}"#);
        let back: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(back["text"], "Olá 😀 \"q\"");
    }
}
