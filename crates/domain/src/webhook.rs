//! What Meta's webhooks say, parsed once: the `whatsapp_business_account`
//! envelope flattened into the events the gateway acts on (a status of an
//! outbound message, an inbound user message) and the ones it only counts.
//!
//! Parsing is lenient where Meta adds things (unknown fields are ignored, an
//! item of a kind we do not know is kept as `Other`) and strict where a wrong
//! value would move state (a status without a wamid or with a timestamp that
//! is not a number is dropped as `Other`, never guessed). A body that is not
//! the envelope at all is an error, which the api answers with 400.

use serde::Deserialize;
use serde_json::Value;

use crate::Recipient;
pub use crate::rules::pricing::{Conversation, Pricing};

/// One thing a webhook told us.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    Status(StatusUpdate),
    Inbound(InboundMessage),
    /// Anything else (template or quality updates, statuses we do not
    /// track, items missing what we need): counted, not acted on.
    Other {
        phone_number_id: Option<String>,
        kind: String,
    },
}

/// Meta's statuses for an outbound message, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MetaStatus {
    fn parse(input: &str) -> Option<Self> {
        match input {
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// The message status this event moves a message to.
    pub fn message_status(self) -> crate::MessageStatus {
        match self {
            Self::Sent => crate::MessageStatus::Sent,
            Self::Delivered => crate::MessageStatus::Delivered,
            Self::Read => crate::MessageStatus::Read,
            Self::Failed => crate::MessageStatus::Failed,
        }
    }
}

/// A status event for a message the business sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub phone_number_id: String,
    pub wamid: String,
    pub status: MetaStatus,
    /// When it happened, by Meta's clock (Unix ms; Meta sends seconds).
    pub timestamp_ms: i64,
    /// Meta's first error, for `failed`.
    pub error: Option<MetaError>,
    /// `biz_opaque_callback_data` as echoed (the gateway's message id).
    pub callback_data: Option<String>,
    /// What Meta says the message costs (`sent`, `delivered`, `read`).
    pub pricing: Option<Pricing>,
    /// The conversation it belongs to (webhook versions before v24).
    pub conversation: Option<Conversation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    pub code: i64,
    pub title: String,
}

/// A message a user sent to the business: it opens their 24-hour window.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub phone_number_id: String,
    pub wamid: String,
    /// The user by phone number, when Meta shows one.
    pub from: Option<Recipient>,
    /// The user by business-scoped user id, when they have one.
    pub from_user_id: Option<Recipient>,
    /// When the user sent it (Unix ms; Meta sends seconds).
    pub timestamp_ms: i64,
    /// `text`, `interactive`, `image`, ...
    pub kind: String,
    /// The message object as Meta sent it, for subscribers.
    pub raw: Value,
}

impl InboundMessage {
    /// Every key the user's window and pair state may be stored under.
    pub fn recipient_keys(&self) -> impl Iterator<Item = &str> {
        self.from
            .iter()
            .chain(&self.from_user_id)
            .map(Recipient::key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a WhatsApp webhook: {0}")]
    NotWhatsApp(String),
    /// A webhook of another of Meta's products (`object` is `page`,
    /// `instagram`, ...): well formed, and none of the gateway's business.
    #[error("the webhook is for object {0:?}, not \"whatsapp_business_account\"")]
    OtherObject(String),
}

/// The events of one webhook body, in the order Meta listed them.
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) if error.is_data() => {
            // Another product's webhook need not have WhatsApp's shape.
            return Err(match serde_json::from_slice::<ObjectOnly>(body) {
                Ok(other) if other.object != WHATSAPP_OBJECT => {
                    WebhookError::OtherObject(other.object)
                }
                _ => WebhookError::NotWhatsApp(error.to_string()),
            });
        }
        Err(error) => return Err(WebhookError::NotJson(error.to_string())),
    };
    if envelope.object != WHATSAPP_OBJECT {
        return Err(WebhookError::OtherObject(envelope.object));
    }
    let mut events = Vec::new();
    for change in envelope.entry.into_iter().flat_map(|entry| entry.changes) {
        let value = change.value;
        let phone_number_id = value.metadata.map(|m| m.phone_number_id);
        if change.field != "messages" {
            events.push(WebhookEvent::Other {
                phone_number_id,
                kind: change.field,
            });
            continue;
        }
        let Some(pnid) = phone_number_id else {
            events.push(WebhookEvent::Other {
                phone_number_id: None,
                kind: "messages_without_metadata".into(),
            });
            continue;
        };
        events.extend(value.statuses.into_iter().map(|s| status_event(&pnid, s)));
        events.extend(value.messages.into_iter().map(|m| inbound_event(&pnid, m)));
    }
    Ok(events)
}

/// An account-level change Meta reports beside messages: a template's
/// review status, or a number's quality or throughput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountUpdate {
    TemplateStatus(TemplateStatusUpdate),
    TemplateCategory(TemplateCategoryUpdate),
    Quality(QualityUpdate),
    Capability(CapabilityUpdate),
}

/// `business_capability_update`: the business portfolio's messaging limit
/// changed (`max_daily_conversations_per_business`, -1 unlimited; older
/// payloads `max_daily_conversation_per_phone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityUpdate {
    /// The WABA (the entry's id).
    pub waba_id: Option<String>,
    pub limit: crate::rules::messaging_limit::MessagingLimit,
}

/// `message_template_status_update`: a template in one language changed
/// status (`APPROVED`, `PAUSED`, `DISABLED`, `REJECTED`, `PENDING_DELETION`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateStatusUpdate {
    /// The WABA (the entry's id).
    pub waba_id: Option<String>,
    pub name: String,
    pub language: String,
    pub event: String,
    pub reason: Option<String>,
}

impl TemplateStatusUpdate {
    /// Whether sends may use the template now.
    pub fn is_usable(&self) -> bool {
        self.event.eq_ignore_ascii_case("APPROVED")
    }
}

/// `template_category_update`: a template in one language is (or is about
/// to be) recategorised. `category` is `new_category`: the category in force
/// now (for an announced change Meta sends the current one there, and the
/// future one as `correct_category`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateCategoryUpdate {
    /// The WABA (the entry's id).
    pub waba_id: Option<String>,
    pub name: String,
    pub language: String,
    pub category: String,
    /// The category before, for a change that happened.
    pub previous: Option<String>,
}

/// `phone_number_quality_update`: a number's quality or throughput or
/// messaging limit changed. Meta names the number by its display number
/// only, so what changed is read back from the Graph API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityUpdate {
    pub waba_id: Option<String>,
    pub display_phone_number: Option<String>,
    /// `FLAGGED`, `UNFLAGGED`, `UPGRADE`, `DOWNGRADE`, `THROUGHPUT_UPGRADE`, ...
    pub event: String,
    pub current_limit: Option<String>,
}

/// The `message_template_status_update`, `template_category_update`,
/// `phone_number_quality_update` and `business_capability_update` changes of a webhook body (which [`parse`] keeps as `Other`); items
/// without what is needed (a template's name and language, an event) are
/// skipped. A body that does not parse has none.
pub fn account_updates(body: &[u8]) -> Vec<AccountUpdate> {
    let Ok(envelope) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let text = |value: &Value, key: &str| -> Option<String> {
        match value.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let mut updates = Vec::new();
    let entries = envelope.get("entry").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let waba_id = text(entry, "id");
        let changes = entry.get("changes").and_then(Value::as_array);
        for change in changes.into_iter().flatten() {
            let Some(value) = change.get("value") else {
                continue;
            };
            match change.get("field").and_then(Value::as_str) {
                Some("message_template_status_update") => {
                    let (Some(name), Some(language), Some(event)) = (
                        text(value, "message_template_name"),
                        text(value, "message_template_language"),
                        text(value, "event"),
                    ) else {
                        continue;
                    };
                    updates.push(AccountUpdate::TemplateStatus(TemplateStatusUpdate {
                        waba_id: waba_id.clone(),
                        name,
                        language,
                        event,
                        reason: text(value, "reason"),
                    }));
                }
                Some("template_category_update") => {
                    let (Some(name), Some(language), Some(category)) = (
                        text(value, "message_template_name"),
                        text(value, "message_template_language"),
                        text(value, "new_category"),
                    ) else {
                        continue;
                    };
                    updates.push(AccountUpdate::TemplateCategory(TemplateCategoryUpdate {
                        waba_id: waba_id.clone(),
                        name,
                        language,
                        category,
                        previous: text(value, "previous_category"),
                    }));
                }
                Some("business_capability_update") => {
                    use crate::rules::messaging_limit::MessagingLimit;
                    let figure = value
                        .get("max_daily_conversations_per_business")
                        .or_else(|| value.get("max_daily_conversation_per_phone"));
                    let limit = match figure {
                        Some(Value::Number(n)) if n.as_i64() == Some(-1) => {
                            Some(MessagingLimit::Unlimited)
                        }
                        Some(Value::Number(n)) => {
                            n.as_u64().filter(|&u| u > 0).map(MessagingLimit::Users)
                        }
                        Some(Value::String(tier)) => MessagingLimit::parse(tier),
                        _ => None,
                    };
                    if let Some(limit) = limit {
                        updates.push(AccountUpdate::Capability(CapabilityUpdate {
                            waba_id: waba_id.clone(),
                            limit,
                        }));
                    }
                }
                Some("phone_number_quality_update") => {
                    let Some(event) = text(value, "event") else {
                        continue;
                    };
                    updates.push(AccountUpdate::Quality(QualityUpdate {
                        waba_id: waba_id.clone(),
                        display_phone_number: text(value, "display_phone_number"),
                        event,
                        current_limit: text(value, "current_limit"),
                    }));
                }
                _ => {}
            }
        }
    }
    updates
}

fn other(pnid: &str, kind: impl Into<String>) -> WebhookEvent {
    WebhookEvent::Other {
        phone_number_id: Some(pnid.to_owned()),
        kind: kind.into(),
    }
}

fn status_event(pnid: &str, raw: RawStatus) -> WebhookEvent {
    let (Some(status), Some(timestamp_ms)) =
        (MetaStatus::parse(&raw.status), timestamp_ms(&raw.timestamp))
    else {
        return other(pnid, format!("status_{}", raw.status));
    };
    if raw.id.is_empty() {
        return other(pnid, "status_without_id");
    }
    WebhookEvent::Status(StatusUpdate {
        phone_number_id: pnid.to_owned(),
        wamid: raw.id,
        status,
        timestamp_ms,
        error: raw.errors.into_iter().next().map(|e| MetaError {
            code: e.code,
            title: e.title.or(e.message).unwrap_or_default(),
        }),
        callback_data: raw.biz_opaque_callback_data,
        pricing: raw.pricing.as_ref().and_then(Pricing::from_value),
        conversation: raw.conversation.as_ref().and_then(Conversation::from_value),
    })
}

fn inbound_event(pnid: &str, raw: Value) -> WebhookEvent {
    let text = |name: &str| raw.get(name).and_then(Value::as_str);
    let from = text("from").and_then(|f| Recipient::parse_phone(f).ok());
    let from_user_id = text("from_user_id").and_then(|u| Recipient::parse_user_id(u).ok());
    let (Some(wamid), Some(timestamp_ms)) = (text("id"), text("timestamp").and_then(timestamp_ms))
    else {
        return other(pnid, "message_without_id_or_timestamp");
    };
    if from.is_none() && from_user_id.is_none() {
        return other(pnid, "message_without_sender");
    }
    WebhookEvent::Inbound(InboundMessage {
        phone_number_id: pnid.to_owned(),
        wamid: wamid.to_owned(),
        from,
        from_user_id,
        timestamp_ms,
        kind: text("type").unwrap_or("unknown").to_owned(),
        raw,
    })
}

/// Meta's timestamps are Unix seconds in a string.
fn timestamp_ms(seconds: &str) -> Option<i64> {
    seconds.parse::<i64>().ok()?.checked_mul(1000)
}

/// The `object` of WhatsApp's webhooks.
const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// Just the product a webhook is for.
#[derive(Deserialize)]
struct ObjectOnly {
    object: String,
}

#[derive(Deserialize)]
struct Envelope {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: String,
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChangeValue {
    metadata: Option<Metadata>,
    statuses: Vec<RawStatus>,
    /// Kept as JSON: subscribers get the message as Meta sent it.
    messages: Vec<Value>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    errors: Vec<RawError>,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
    /// Kept as JSON and read leniently: an odd `pricing` must not cost the
    /// status.
    #[serde(default)]
    pricing: Option<Value>,
    #[serde(default)]
    conversation: Option<Value>,
}

#[derive(Deserialize)]
struct RawError {
    code: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(value: Value) -> Vec<u8> {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": value}]}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn statuses_are_read_with_their_errors_and_callback_data() {
        let body = envelope(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
            "statuses": [
                {"id": "wamid.A", "status": "delivered", "timestamp": "1749416383",
                 "recipient_id": "16505551234", "biz_opaque_callback_data": "106540352242922-1-0",
                 "pricing": {"billable": true}, "something_new": 1},
                {"id": "wamid.B", "status": "failed", "timestamp": "1749416384",
                 "errors": [{"code": 131047, "title": "Re-engagement message"}]},
            ]
        }));
        let events = parse(&body).expect("parses");
        assert_eq!(events.len(), 2);
        let WebhookEvent::Status(delivered) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(delivered.status, MetaStatus::Delivered);
        assert_eq!(delivered.timestamp_ms, 1_749_416_383_000);
        assert_eq!(
            delivered.callback_data.as_deref(),
            Some("106540352242922-1-0")
        );
        let WebhookEvent::Status(failed) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(
            failed.error,
            Some(MetaError {
                code: 131047,
                title: "Re-engagement message".into()
            })
        );
    }

    #[test]
    fn inbound_messages_carry_both_ids_when_meta_gives_both() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "messages": [{"from": "16505551234", "from_user_id": "US.13491208655302741918",
                "id": "wamid.IN", "timestamp": "1749416383", "type": "text", "text": {"body": "hi"}}]
        }));
        let events = parse(&body).expect("parses");
        let WebhookEvent::Inbound(message) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            message.recipient_keys().collect::<Vec<_>>(),
            ["+16505551234", "US.13491208655302741918"]
        );
        assert_eq!(message.kind, "text");
        assert_eq!(message.raw["text"]["body"], "hi");
    }

    #[test]
    fn items_we_cannot_act_on_are_kept_as_other() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "statuses": [{"id": "wamid.A", "status": "deleted", "timestamp": "1"},
                         {"id": "wamid.B", "status": "read", "timestamp": "yesterday"}],
            "messages": [{"id": "wamid.C", "timestamp": "1", "type": "text"}]
        }));
        let events = parse(&body).expect("parses");
        assert_eq!(events.len(), 3);
        assert!(
            events
                .iter()
                .all(|e| matches!(e, WebhookEvent::Other { .. }))
        );
    }

    #[test]
    fn other_fields_are_counted_not_acted_on() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]});
        let events = parse(body.to_string().as_bytes()).expect("parses");
        assert_eq!(
            events,
            [WebhookEvent::Other {
                phone_number_id: None,
                kind: "message_template_status_update".into()
            }]
        );
    }

    #[test]
    fn template_category_updates_carry_the_category_in_force() {
        let change = |value: Value| json!({"field": "template_category_update", "value": value});
        let changes = [
            change(
                json!({"message_template_id": 1234, "message_template_name": "order_update",
                "message_template_language": "en_US", "previous_category": "UTILITY",
                "new_category": "MARKETING"}),
            ),
            change(
                json!({"message_template_id": 1234, "message_template_name": "promo",
                "message_template_language": "en_US", "correct_category": "MARKETING",
                "new_category": "UTILITY", "category_update_timestamp": 1750000000}),
            ),
            change(json!({"message_template_name": "x"})),
        ];
        let body = json!({"object": "whatsapp_business_account",
            "entry": [{"id": "2000", "time": 1, "changes": changes}]})
        .to_string();
        let updates = account_updates(body.as_bytes());
        assert_eq!(
            updates,
            [
                AccountUpdate::TemplateCategory(TemplateCategoryUpdate {
                    waba_id: Some("2000".into()),
                    name: "order_update".into(),
                    language: "en_US".into(),
                    category: "MARKETING".into(),
                    previous: Some("UTILITY".into()),
                }),
                AccountUpdate::TemplateCategory(TemplateCategoryUpdate {
                    waba_id: Some("2000".into()),
                    name: "promo".into(),
                    language: "en_US".into(),
                    category: "UTILITY".into(),
                    previous: None,
                }),
            ]
        );
    }

    #[test]
    fn template_and_quality_updates_are_read_as_account_updates() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "2000", "time": 1,
            "changes": [
                {"field": "message_template_status_update", "value": {"event": "PAUSED",
                    "message_template_id": 1234, "message_template_name": "hello_world",
                    "message_template_language": "en_US", "reason": "NONE"}},
                {"field": "phone_number_quality_update", "value": {"display_phone_number": "15550100000",
                    "event": "FLAGGED", "current_limit": "TIER_2K"}},
                {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
                {"field": "messages", "value": {}}
            ]}]})
        .to_string();
        let updates = account_updates(body.as_bytes());
        assert_eq!(updates.len(), 2, "{updates:?}");
        let AccountUpdate::TemplateStatus(template) = &updates[0] else {
            panic!("{updates:?}")
        };
        assert_eq!(
            (template.name.as_str(), template.language.as_str()),
            ("hello_world", "en_US")
        );
        assert!(!template.is_usable());
        assert_eq!(template.waba_id.as_deref(), Some("2000"));
        let AccountUpdate::Quality(quality) = &updates[1] else {
            panic!("{updates:?}")
        };
        assert_eq!(quality.event, "FLAGGED");
        assert_eq!(quality.current_limit.as_deref(), Some("TIER_2K"));
        assert!(account_updates(b"not json").is_empty());
    }

    #[test]
    fn what_is_not_the_envelope_is_an_error() {
        assert!(matches!(parse(b"{not json"), Err(WebhookError::NotJson(_))));
        assert!(matches!(parse(b""), Err(WebhookError::NotJson(_))));
        assert!(matches!(
            parse(br#"{"object": "page", "entry": []}"#),
            Err(WebhookError::OtherObject(object)) if object == "page"
        ));
        // Another product's entries need not look like WhatsApp's.
        assert!(matches!(
            parse(br#"{"object": "instagram", "entry": [{"changes": "x"}]}"#),
            Err(WebhookError::OtherObject(object)) if object == "instagram"
        ));
        assert!(matches!(
            parse(br#"{"object": "whatsapp_business_account", "entry": "x"}"#),
            Err(WebhookError::NotWhatsApp(_))
        ));
        assert!(matches!(
            parse(br#"{"object": 7}"#),
            Err(WebhookError::NotWhatsApp(_))
        ));
        assert!(matches!(
            parse(br#"{"entry": "x"}"#),
            Err(WebhookError::NotWhatsApp(_))
        ));
        assert!(matches!(parse(b"[1,2]"), Err(WebhookError::NotWhatsApp(_))));
    }

    #[test]
    fn statuses_carry_their_pricing_and_conversation() {
        let body = envelope(json!({
            "metadata": {"phone_number_id": "1"},
            "statuses": [
                {"id": "wamid.A", "status": "delivered", "timestamp": "1749416383",
                 "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular",
                             "category": "marketing"}},
                {"id": "wamid.B", "status": "sent", "timestamp": "1749416383",
                 "conversation": {"id": "c0ffee", "expiration_timestamp": "1749502783",
                                  "origin": {"type": "utility"}},
                 "pricing": {"billable": true, "pricing_model": "CBP", "category": "utility"}},
                {"id": "wamid.C", "status": "read", "timestamp": "1749416383",
                 "pricing": ["not", "an", "object"], "conversation": {"id": "no spaces"}},
            ]
        }));
        let events = parse(&body).expect("parses");
        let statuses: Vec<&StatusUpdate> = events
            .iter()
            .map(|e| match e {
                WebhookEvent::Status(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        let pricing = statuses[0].pricing.as_ref().expect("pricing");
        assert!(pricing.billable);
        assert_eq!(pricing.category_label(), "marketing");
        assert_eq!(pricing.kind.as_deref(), Some("regular"));
        assert_eq!(statuses[0].conversation, None);
        let conversation = statuses[1].conversation.as_ref().expect("conversation");
        assert_eq!(conversation.id, "c0ffee");
        assert_eq!(conversation.origin.as_deref(), Some("utility"));
        assert_eq!(
            statuses[1]
                .pricing
                .as_ref()
                .and_then(|p| p.pricing_model.as_deref()),
            Some("CBP")
        );
        // What cannot be read is left out; the status itself stays.
        assert_eq!(statuses[2].status, MetaStatus::Read);
        assert_eq!(
            (&statuses[2].pricing, &statuses[2].conversation),
            (&None, &None)
        );
    }
}
