//! What a message costs, as Meta reports it in the status webhooks of the
//! message, and what the gateway counts of it.
//!
//! - `pricing`: `{billable, pricing_model, type, category}` on `sent`,
//!   `delivered` and `read` statuses (not on `failed`). Since July 2025 the
//!   model is `PMP` (per message): a message is billed when it is
//!   delivered, by its category (`marketing`, `utility`, `authentication`,
//!   ...); `type` says why a free one is free (`free_customer_service`,
//!   `free_entry_point`), `regular` otherwise. Before, `CBP`: a
//!   conversation is billed.
//! - `conversation`: `{id, origin: {type}, expiration_timestamp}`, on the
//!   statuses of webhook versions before v24 (the conversation-based
//!   model; v24 and later send none).
//!
//! What is counted, each exactly once however often Meta repeats a status:
//! a billable message at its first `delivered` or `read` status (Meta
//! bills on delivery; when delivery and read happen together no
//! `delivered` comes), and a conversation at the first status that names
//! its id. The caller keeps the marks that make it once (see the worker's
//! `costs` module); these functions only say what a status would count.
//!
//! Categories become metric label values: Meta's fixed set
//! ([`CATEGORIES`]), anything else [`OTHER`], so a webhook cannot grow the
//! label space.

use serde_json::Value;

use crate::webhook::MetaStatus;

/// The label for a category Meta sends that is not one of the known ones.
pub const OTHER: &str = "other";

/// Meta's pricing categories (per-message and conversation-based pricing),
/// as label values, and [`OTHER`] last.
pub const CATEGORIES: [&str; 8] = [
    "marketing",
    "marketing_lite",
    "utility",
    "authentication",
    "authentication_international",
    "service",
    "referral_conversion",
    OTHER,
];

/// The categories whose counters exist from the start (at 0), so that an
/// alert's or a panel's `increase()` sees the first one.
pub const COMMON_CATEGORIES: [&str; 4] = ["marketing", "utility", "authentication", "service"];

/// Longest category or pricing word kept; Meta's are short.
const WORD_MAX: usize = 64;
/// Longest conversation id accepted (Meta's are 32 hex digits); it names a
/// Redis key, so anything else is ignored.
const CONVERSATION_ID_MAX: usize = 128;

/// The label value for a category as Meta wrote it (any case).
pub fn category_label(raw: &str) -> &'static str {
    let raw = raw.trim();
    CATEGORIES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(raw))
        .copied()
        .unwrap_or(OTHER)
}

/// A status's `pricing` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub billable: bool,
    /// As Meta wrote it (`marketing`, `utility`, ...).
    pub category: Option<String>,
    /// `PMP` (per message) or `CBP` (per conversation).
    pub pricing_model: Option<String>,
    /// `regular`, `free_customer_service`, `free_entry_point` (PMP only).
    pub kind: Option<String>,
}

impl Pricing {
    /// Reads a `pricing` object leniently: `billable` as a boolean (or
    /// `"true"`), anything missing or of another shape left out; `None`
    /// for what is not an object.
    pub fn from_value(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        let billable = match object.get("billable") {
            Some(Value::Bool(billable)) => *billable,
            Some(Value::String(text)) => text.eq_ignore_ascii_case("true"),
            _ => false,
        };
        Some(Self {
            billable,
            category: word(object.get("category")),
            pricing_model: word(object.get("pricing_model")),
            kind: word(object.get("type")),
        })
    }

    /// The category's label value ([`OTHER`] when Meta named none).
    pub fn category_label(&self) -> &'static str {
        self.category.as_deref().map_or(OTHER, category_label)
    }
}

/// A status's `conversation` object (webhook versions before v24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    /// `origin.type`: the conversation's category.
    pub origin: Option<String>,
    /// `expiration_timestamp` (Unix ms; Meta sends seconds).
    pub expires_ms: Option<i64>,
}

impl Conversation {
    /// Reads a `conversation` object; `None` without a usable id (one of
    /// letters, digits, `_`, `-`, `.`, at most 128 characters).
    pub fn from_value(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        let id = object.get("id")?.as_str()?;
        let usable = !id.is_empty()
            && id.len() <= CONVERSATION_ID_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !usable {
            return None;
        }
        let origin = object.get("origin").and_then(|o| word(o.get("type")));
        let expires_ms = match object.get("expiration_timestamp") {
            Some(Value::String(seconds)) => seconds.trim().parse::<i64>().ok(),
            Some(Value::Number(seconds)) => seconds.as_i64(),
            _ => None,
        }
        .and_then(|seconds| seconds.checked_mul(1000));
        Some(Self {
            id: id.to_owned(),
            origin,
            expires_ms,
        })
    }
}

/// A short text field, trimmed; `None` when absent, empty or too long.
fn word(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?.trim();
    (!text.is_empty() && text.len() <= WORD_MAX).then(|| text.to_owned())
}

/// The category this status bills its message under, if it is a status
/// the gateway counts a billable message at: `delivered` or `read` with
/// `billable: true`. The message counts once, at the first of them.
pub fn billed_category(status: MetaStatus, pricing: Option<&Pricing>) -> Option<&'static str> {
    let pricing = pricing.filter(|p| p.billable)?;
    matches!(status, MetaStatus::Delivered | MetaStatus::Read).then(|| pricing.category_label())
}

/// The conversation this status names, with its category (`origin.type`,
/// else the pricing's category): counted once per id, at the first status
/// that names it.
pub fn conversation_category<'a>(
    conversation: Option<&'a Conversation>,
    pricing: Option<&Pricing>,
) -> Option<(&'a str, &'static str)> {
    let conversation = conversation?;
    let category = conversation
        .origin
        .as_deref()
        .map(category_label)
        .or_else(|| pricing.map(Pricing::category_label))
        .unwrap_or(OTHER);
    Some((conversation.id.as_str(), category))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn categories_map_to_a_fixed_set_of_labels() {
        assert_eq!(category_label("marketing"), "marketing");
        assert_eq!(category_label("UTILITY"), "utility");
        assert_eq!(category_label(" Authentication "), "authentication");
        assert_eq!(
            category_label("authentication_international"),
            "authentication_international"
        );
        assert_eq!(category_label("marketing_lite"), "marketing_lite");
        assert_eq!(category_label("service"), "service");
        assert_eq!(category_label("referral_conversion"), "referral_conversion");
        assert_eq!(category_label("something_new"), OTHER);
        assert_eq!(category_label(""), OTHER);
        assert_eq!(category_label(&"x".repeat(10_000)), OTHER);
        for label in COMMON_CATEGORIES {
            assert!(CATEGORIES.contains(&label));
        }
    }

    #[test]
    fn pricing_is_read_as_meta_sends_it_and_leniently_otherwise() {
        let pricing = Pricing::from_value(&json!({"billable": true, "pricing_model": "PMP",
            "type": "regular", "category": "marketing"}))
        .expect("an object");
        assert_eq!(
            pricing,
            Pricing {
                billable: true,
                category: Some("marketing".into()),
                pricing_model: Some("PMP".into()),
                kind: Some("regular".into()),
            }
        );
        assert_eq!(pricing.category_label(), "marketing");

        let free = Pricing::from_value(&json!({"billable": false, "pricing_model": "PMP",
            "type": "free_customer_service", "category": "service"}))
        .expect("an object");
        assert!(!free.billable);
        assert_eq!(free.kind.as_deref(), Some("free_customer_service"));

        // Shapes Meta does not send: read what can be read, never fail.
        let odd = Pricing::from_value(&json!({"billable": "true", "category": 7})).expect("object");
        assert!(odd.billable);
        assert_eq!(odd.category, None);
        assert_eq!(odd.category_label(), OTHER);
        assert!(!Pricing::from_value(&json!({})).expect("object").billable);
        assert_eq!(Pricing::from_value(&json!("PMP")), None);
        assert_eq!(Pricing::from_value(&Value::Null), None);
    }

    #[test]
    fn a_conversation_needs_an_id_fit_for_a_key() {
        let conversation =
            Conversation::from_value(&json!({"id": "4c1f0a9b2d3e4f5a6b7c8d9e0f1a2b3c",
            "expiration_timestamp": "1749502783", "origin": {"type": "utility"}}))
            .expect("a conversation");
        assert_eq!(conversation.origin.as_deref(), Some("utility"));
        assert_eq!(conversation.expires_ms, Some(1_749_502_783_000));
        assert_eq!(
            Conversation::from_value(&json!({"id": "abc", "expiration_timestamp": 5}))
                .and_then(|c| c.expires_ms),
            Some(5_000)
        );
        for id in [
            json!(""),
            json!("a b"),
            json!("a:b"),
            json!("x".repeat(129)),
            json!(7),
        ] {
            assert_eq!(Conversation::from_value(&json!({"id": id})), None, "{id}");
        }
        assert_eq!(Conversation::from_value(&json!({"origin": {}})), None);
    }

    #[test]
    fn a_billable_message_counts_at_delivered_or_read_only() {
        let billable = Pricing::from_value(&json!({"billable": true, "category": "utility"}));
        let free = Pricing::from_value(&json!({"billable": false, "category": "service"}));
        assert_eq!(
            billed_category(MetaStatus::Delivered, billable.as_ref()),
            Some("utility")
        );
        assert_eq!(
            billed_category(MetaStatus::Read, billable.as_ref()),
            Some("utility")
        );
        assert_eq!(billed_category(MetaStatus::Sent, billable.as_ref()), None);
        assert_eq!(billed_category(MetaStatus::Failed, billable.as_ref()), None);
        assert_eq!(billed_category(MetaStatus::Delivered, free.as_ref()), None);
        assert_eq!(billed_category(MetaStatus::Delivered, None), None);
    }

    #[test]
    fn a_conversation_takes_its_origin_else_the_pricing_category() {
        let pricing = Pricing::from_value(&json!({"billable": true, "category": "marketing"}));
        let with_origin =
            Conversation::from_value(&json!({"id": "c1", "origin": {"type": "SERVICE"}}));
        let without = Conversation::from_value(&json!({"id": "c2"}));
        assert_eq!(
            conversation_category(with_origin.as_ref(), pricing.as_ref()),
            Some(("c1", "service"))
        );
        assert_eq!(
            conversation_category(without.as_ref(), pricing.as_ref()),
            Some(("c2", "marketing"))
        );
        assert_eq!(
            conversation_category(without.as_ref(), None),
            Some(("c2", OTHER))
        );
        assert_eq!(conversation_category(None, pricing.as_ref()), None);
    }
}
