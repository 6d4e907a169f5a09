//! What a message says: the Cloud API message object a service posts to
//! /send (`type` plus the object of that type, and an optional `context`),
//! parsed once into an [`OutboundMessage`] that is within Meta's limits, so
//! the worker never re-checks and Meta never answers "invalid parameter" for
//! something we could have refused with a clear field path.
//!
//! The object is kept exactly as given: fields we do not model pass through
//! to Meta unchanged, and a service can copy a payload from Meta's docs. Each
//! kind's rules live in its own module; `fields` holds the JSON readers they
//! share, so every error names its path in the body and a stable code.

mod basic;
mod fields;
mod interactive;
mod media;
mod template;
mod text;

use serde_json::{Map, Value};

use crate::FieldError;
use fields::{ANY, NON_EMPTY, Object};

/// The Cloud API message types the gateway sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Text,
    Template,
    Image,
    Document,
    Audio,
    Video,
    Sticker,
    Interactive,
    Location,
    Contacts,
    Reaction,
}

impl MessageKind {
    pub const ALL: [MessageKind; 11] = [
        Self::Text,
        Self::Template,
        Self::Image,
        Self::Document,
        Self::Audio,
        Self::Video,
        Self::Sticker,
        Self::Interactive,
        Self::Location,
        Self::Contacts,
        Self::Reaction,
    ];

    /// A media message: its object names a file by uploaded `id` or `link`.
    pub fn is_media(self) -> bool {
        matches!(
            self,
            Self::Image | Self::Document | Self::Audio | Self::Video | Self::Sticker
        )
    }

    /// The Cloud API's name: the value of `type`, and the key of the object.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Template => "template",
            Self::Image => "image",
            Self::Document => "document",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Sticker => "sticker",
            Self::Interactive => "interactive",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Reaction => "reaction",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

/// A message content within Meta's limits. Built only by [`parse`] and
/// [`template`], so holding one means it was checked.
///
/// [`parse`]: OutboundMessage::parse
/// [`template`]: OutboundMessage::template
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    kind: MessageKind,
    /// The object under the `type` key, as given.
    object: Value,
    /// `{"message_id": "wamid..."}`: the message this one quotes.
    context: Option<Value>,
}

impl OutboundMessage {
    /// `body` is the whole /send request object: reads `type`, the object
    /// under the key named by `type`, and the optional `context`. The other
    /// keys are the gateway's own and are left to the caller. Field paths in
    /// errors are relative to the body ("text.body", "image.link").
    ///
    /// What [`write_graph_fields`](Self::write_graph_fields) writes parses
    /// back to an equal message, so a stored message can be read this way.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldError> {
        let body = Object::from_map(body, "");
        let kind = MessageKind::parse(body.string("type", ANY)?).ok_or_else(unknown_type)?;
        let object = body.required(kind.as_str())?;
        check(kind, object, kind.as_str())?;
        if let Some(context) = body.optional_object("context")? {
            context.string("message_id", NON_EMPTY)?;
        }
        Ok(Self {
            kind,
            object: object.clone(),
            context: body.get("context").cloned(),
        })
    }

    /// A template object on its own (a `fallback_template`, a sender's
    /// configured default). Errors are relative to it ("name",
    /// "components[0].type"); the caller prefixes them with `within`.
    pub fn template(object: &Value) -> Result<Self, FieldError> {
        template::check(object, "")?;
        Ok(Self {
            kind: MessageKind::Template,
            object: object.clone(),
            context: None,
        })
    }

    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The uploaded media `id` a media message names (`image.id`, ...),
    /// if it names one rather than a `link`.
    pub fn media_id(&self) -> Option<&str> {
        if self.kind.is_media() {
            self.object.get("id").and_then(Value::as_str)
        } else {
            None
        }
    }

    /// Templates are the only messages allowed outside the 24-hour window.
    pub fn is_template(&self) -> bool {
        self.kind == MessageKind::Template
    }

    /// Writes `type`, `<type>`: object and, if any, `context` into a Graph
    /// API request body being built (the caller adds `messaging_product`,
    /// the recipient and the rest).
    pub fn write_graph_fields(&self, out: &mut Map<String, Value>) {
        let name = self.kind.as_str();
        out.insert("type".to_owned(), Value::from(name));
        out.insert(name.to_owned(), self.object.clone());
        if let Some(context) = &self.context {
            out.insert("context".to_owned(), context.clone());
        }
    }

    /// The Graph API send body for this message to `recipient` (without
    /// `biz_opaque_callback_data`, which the worker adds).
    pub fn graph_body(&self, recipient: &crate::Recipient) -> String {
        // Written straight out rather than built as a Map and serialised:
        // this runs for every accepted message, and the object is not cloned.
        let (field, value) = recipient.graph_field();
        let kind = self.kind.as_str();
        let mut body = String::with_capacity(256);
        body.push_str(r#"{"messaging_product":"whatsapp","recipient_type":"individual","#);
        push_json_member(&mut body, field, &Value::from(value));
        body.push(',');
        push_json_member(&mut body, "type", &Value::from(kind));
        body.push(',');
        push_json_member(&mut body, kind, &self.object);
        if let Some(context) = &self.context {
            body.push(',');
            push_json_member(&mut body, "context", context);
        }
        body.push('}');
        body
    }
}

/// `"key":<value as JSON>`; keys are ours (ASCII names) and need no escaping.
fn push_json_member(out: &mut String, key: &str, value: &Value) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    // Serialising a Value into a String cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

fn unknown_type() -> FieldError {
    let names: Vec<&str> = MessageKind::ALL.iter().map(|kind| kind.as_str()).collect();
    let message = format!("type must be one of: {}", names.join(", "));
    FieldError::new("type", "unknown_type", message)
}

/// Checks `value`, found at `path`, against the rules of `kind`.
fn check(kind: MessageKind, value: &Value, path: &str) -> Result<(), FieldError> {
    match kind {
        MessageKind::Text => text::check(value, path),
        MessageKind::Template => template::check(value, path),
        MessageKind::Image
        | MessageKind::Document
        | MessageKind::Audio
        | MessageKind::Video
        | MessageKind::Sticker => media::check(kind, value, path),
        MessageKind::Interactive => interactive::check(value, path),
        MessageKind::Location => basic::check_location(value, path),
        MessageKind::Contacts => basic::check_contacts(value, path),
        MessageKind::Reaction => basic::check_reaction(value, path),
    }
}

/// Shared by the tests of every kind: tables of bodies that must parse, and
/// of bodies that must fail at an exact field with an exact code.
#[cfg(test)]
mod test_support {
    use serde_json::Value;

    use super::OutboundMessage;
    use crate::FieldError;

    pub(super) fn parse(body: &Value) -> Result<OutboundMessage, FieldError> {
        match body {
            Value::Object(map) => OutboundMessage::parse(map),
            other => panic!("test bodies are objects, not {other}"),
        }
    }

    pub(super) fn assert_accepts(cases: &[(&str, Value)]) {
        for (name, body) in cases {
            if let Err(err) = parse(body) {
                panic!("{name}: rejected with {err:?}");
            }
        }
    }

    /// Each case: name, body, expected field path, expected code.
    pub(super) fn assert_rejects(cases: &[(&str, Value, &str, &str)]) {
        for (name, body, field, code) in cases {
            match parse(body) {
                Ok(_) => panic!("{name}: accepted, expected {field} {code}"),
                Err(err) => assert_eq!(
                    (err.field.as_ref(), err.code),
                    (*field, *code),
                    "{name}: {}",
                    err.message
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_support::{assert_accepts, assert_rejects, parse};
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MessageKind::parse("Text"), None);
        assert_eq!(MessageKind::parse("order_details"), None);
    }

    #[test]
    fn the_body_needs_a_known_type_and_its_object() {
        let text = json!({"body": "hi"});
        assert_rejects(&[
            ("no type", json!({"text": text}), "type", "missing_field"),
            (
                "type not a string",
                json!({"type": 1, "text": text}),
                "type",
                "invalid_type",
            ),
            (
                "unknown type",
                json!({"type": "order_details"}),
                "type",
                "unknown_type",
            ),
            (
                "type in capitals",
                json!({"type": "TEXT", "text": text}),
                "type",
                "unknown_type",
            ),
            (
                "empty type",
                json!({"type": "", "text": text}),
                "type",
                "unknown_type",
            ),
            (
                "no object",
                json!({"type": "text", "image": text}),
                "text",
                "missing_field",
            ),
            (
                "null object",
                json!({"type": "text", "text": null}),
                "text",
                "invalid_type",
            ),
            (
                "object of another kind",
                json!({"type": "image", "text": text}),
                "image",
                "missing_field",
            ),
        ]);
        let err = parse(&json!({"type": "order_details"})).expect_err("unknown");
        assert!(
            err.message
                .starts_with("type must be one of: text, template, image")
        );
    }

    #[test]
    fn context_quotes_a_message_by_its_id() {
        let text = json!({"body": "hi"});
        assert_accepts(&[(
            "context",
            json!({"type": "text", "text": text, "context": {"message_id": "wamid.HBgL"}}),
        )]);
        assert_rejects(&[
            (
                "not an object",
                json!({"type": "text", "text": text, "context": "wamid.x"}),
                "context",
                "invalid_type",
            ),
            (
                "no id",
                json!({"type": "text", "text": text, "context": {}}),
                "context.message_id",
                "missing_field",
            ),
            (
                "empty id",
                json!({"type": "text", "text": text, "context": {"message_id": ""}}),
                "context.message_id",
                "empty",
            ),
            (
                "number id",
                json!({"type": "text", "text": text, "context": {"message_id": 7}}),
                "context.message_id",
                "invalid_type",
            ),
        ]);
    }

    #[test]
    fn the_gateway_fields_are_left_alone_and_unknown_fields_pass_through() {
        let body = json!({
            "from": "billing", "to": "+16505551234", "idempotency_key": "k1", "priority": "bulk",
            "type": "text",
            "text": {"body": "hi", "preview_url": true, "some_future_field": {"x": 1}},
        });
        let message = parse(&body).expect("valid");
        assert_eq!(message.kind(), MessageKind::Text);
        assert!(!message.is_template());
        let mut out = Map::new();
        message.write_graph_fields(&mut out);
        assert_eq!(
            Value::Object(out),
            json!({"type": "text", "text": {"body": "hi", "preview_url": true, "some_future_field": {"x": 1}}})
        );
    }

    #[test]
    fn graph_fields_are_written_and_parse_back_equal() {
        let body = json!({
            "type": "image",
            "image": {"link": "https://example.com/a.jpg", "caption": "a"},
            "context": {"message_id": "wamid.HBgL"},
        });
        let message = parse(&body).expect("valid");
        let mut out = Map::new();
        out.insert("messaging_product".to_owned(), json!("whatsapp"));
        message.write_graph_fields(&mut out);
        assert_eq!(
            Value::Object(out.clone()),
            json!({
                "messaging_product": "whatsapp",
                "type": "image",
                "image": {"link": "https://example.com/a.jpg", "caption": "a"},
                "context": {"message_id": "wamid.HBgL"},
            })
        );
        assert_eq!(OutboundMessage::parse(&out), Ok(message));
    }

    #[test]
    fn a_template_on_its_own_has_relative_paths() {
        let template = json!({"name": "order_update", "language": {"code": "en_US"}});
        let message = OutboundMessage::template(&template).expect("valid");
        assert!(message.is_template());
        assert_eq!(message.kind(), MessageKind::Template);
        let mut out = Map::new();
        message.write_graph_fields(&mut out);
        assert_eq!(
            Value::Object(out),
            json!({"type": "template", "template": template})
        );

        let cases = [
            (json!("order_update"), "fallback_template", "invalid_type"),
            (
                json!({"language": {"code": "en"}}),
                "fallback_template.name",
                "missing_field",
            ),
            (
                json!({"name": "a", "language": {"code": "en"}, "components": [{"type": "side"}]}),
                "fallback_template.components[0].type",
                "invalid_value",
            ),
        ];
        for (object, field, code) in cases {
            let err = OutboundMessage::template(&object)
                .expect_err("invalid")
                .within("fallback_template");
            assert_eq!(
                (err.field.as_ref(), err.code),
                (field, code),
                "{}",
                err.message
            );
        }
    }

    /// Random bodies built from the words the parsers look for: whatever
    /// arrives, parsing answers Ok or Err and never panics.
    #[test]
    fn arbitrary_bodies_never_panic() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let mut body = Map::new();
            let kind = MessageKind::ALL[rng.below(MessageKind::ALL.len())];
            body.insert("type".to_owned(), json!(kind.as_str()));
            body.insert(kind.as_str().to_owned(), random_value(&mut rng, 4));
            if rng.below(4) == 0 {
                body.insert("context".to_owned(), random_value(&mut rng, 2));
            }
            let _ = OutboundMessage::parse(&body);
            let _ = OutboundMessage::template(&random_value(&mut rng, 4));
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const KEYS: [&str; 40] = [
        "type",
        "body",
        "text",
        "preview_url",
        "header",
        "footer",
        "action",
        "buttons",
        "reply",
        "id",
        "title",
        "button",
        "sections",
        "rows",
        "description",
        "name",
        "parameters",
        "display_text",
        "url",
        "link",
        "caption",
        "filename",
        "language",
        "code",
        "components",
        "sub_type",
        "index",
        "latitude",
        "longitude",
        "message_id",
        "emoji",
        "formatted_name",
        "image",
        "video",
        "document",
        "list",
        "cta_url",
        "quick_reply",
        "reply",
        "address",
    ];
    const STRINGS: [&str; 14] = [
        "",
        "button",
        "list",
        "cta_url",
        "reply",
        "text",
        "image",
        "body",
        "BUTTON",
        "https://a.b/c",
        "http://",
        "9",
        "😀",
        "order_update",
    ];

    fn random_value(rng: &mut XorShift, depth: usize) -> Value {
        match rng.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.below(200) as f64 - 100.5),
            3 => json!(STRINGS[rng.below(STRINGS.len())]),
            4 => json!("x".repeat(rng.below(30))),
            5 => Value::Array(
                (0..rng.below(12))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.below(8))
                    .map(|_| {
                        (
                            KEYS[rng.below(KEYS.len())].to_owned(),
                            random_value(rng, depth - 1),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod graph_body_tests {
    use super::*;
    use crate::Recipient;

    #[test]
    fn the_graph_body_is_the_message_object_with_the_envelope() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"type":"text","text":{"body":"héllo \"you\"","preview_url":true},"context":{"message_id":"wamid.X"}}"#,
        )
        .expect("json");
        let message = OutboundMessage::parse(&body).expect("valid");
        let recipient = Recipient::parse_phone("+1 650 555 1234").expect("phone");
        let rendered: Value =
            serde_json::from_str(&message.graph_body(&recipient)).expect("valid JSON");
        let mut expected = Map::new();
        expected.insert("messaging_product".into(), "whatsapp".into());
        expected.insert("recipient_type".into(), "individual".into());
        expected.insert("to".into(), "+16505551234".into());
        message.write_graph_fields(&mut expected);
        assert_eq!(rendered, Value::Object(expected));
    }
}
