//! Message templates known before queueing: each WABA's registry (name,
//! language, category, status, and how many parameters each component
//! takes), read from Meta's `message_templates` listing, and the rule
//! `/send` applies with it. No I/O: the queue crate keeps the registry in
//! Redis (`gw:{waba:<id>}:templates`), workers sync it from the Graph API,
//! the api checks every `template` and `fallback_template` against a
//! snapshot of it ([`check`]).
//!
//! The parameter rule ([`Parameters::of_components`], [`check_parameters`]):
//!
//! - a text header takes as many parameters as its text has placeholders
//!   (`{{1}}` or `{{name}}`; Meta allows one); a media or location header
//!   (`IMAGE`, `VIDEO`, `DOCUMENT`, `GIF`, `LOCATION`) takes one;
//! - the body takes one per distinct placeholder of its text;
//! - a button takes, at its index: a `URL` button one per placeholder of
//!   its URL, `COPY_CODE` and `OTP` one, `PHONE_NUMBER` and `VOICE_CALL`
//!   none; a `QUICK_REPLY`, `FLOW`, `CATALOG` or `MPM` button any number
//!   (their payload or action is optional);
//! - a template with a component the gateway does not count (a carousel, a
//!   limited-time offer, a header format it does not know) is not checked
//!   for parameters at all: the gateway refuses only what it is sure Meta
//!   refuses.
//!
//! A registry that was never synced (no worker has read Meta yet) refuses
//! nothing: the message is queued as before the registry existed.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

/// A template's category, as Meta assigns it; what the marketing rules
/// (suppressions, caps) look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
}

impl TemplateCategory {
    /// Meta's name (`MARKETING`, ...): also how the gateway stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "MARKETING",
            Self::Utility => "UTILITY",
            Self::Authentication => "AUTHENTICATION",
        }
    }

    /// Meta's name in any case; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Marketing, Self::Utility, Self::Authentication]
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }

    pub fn is_marketing(self) -> bool {
        self == Self::Marketing
    }
}

/// The status a template may be sent in.
pub const APPROVED: &str = "APPROVED";

/// Meta's error for a template that does not exist (in that language), or
/// is not approved yet (pending, rejected).
pub const TEMPLATE_MISSING: i64 = 132_001;
/// Meta's error for a send whose parameters do not match the template.
pub const TEMPLATE_PARAMETERS: i64 = 132_000;
/// Meta's error for a paused template.
pub const TEMPLATE_PAUSED: i64 = 132_015;
/// Meta's error for a disabled template.
pub const TEMPLATE_DISABLED: i64 = 132_016;

/// The error Meta answers a send of a template in `status` with; `None`
/// when it is approved.
pub fn status_code(status: &str) -> Option<i64> {
    match status.to_ascii_uppercase().as_str() {
        APPROVED => None,
        "PAUSED" => Some(TEMPLATE_PAUSED),
        "DISABLED" => Some(TEMPLATE_DISABLED),
        _ => Some(TEMPLATE_MISSING),
    }
}

/// The status a template is known to be in after Meta answered a send of
/// it with `code`; `None` for codes that say nothing about the template
/// (132001 says it does not exist: the entry goes, see the worker).
pub fn status_after(code: i64) -> Option<&'static str> {
    match code {
        TEMPLATE_PAUSED => Some("PAUSED"),
        TEMPLATE_DISABLED => Some("DISABLED"),
        _ => None,
    }
}

/// The status a template is in after a `message_template_status_update`
/// event: the event's own name, `APPROVED` for `REINSTATED`; `None` for
/// `FLAGGED` (Meta warns that the template's quality is low and that it
/// may be paused: it may still be sent, and its status stays).
pub fn status_after_event(event: &str) -> Option<String> {
    match event.trim().to_ascii_uppercase().as_str() {
        "FLAGGED" => None,
        "REINSTATED" => Some(APPROVED.to_owned()),
        other => Some(other.to_owned()),
    }
}

/// How many parameters a send must give each component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub header: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub body: usize,
    /// By button index: exactly this many, or `None`: any number (a quick
    /// reply's payload is optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Option<usize>>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One template in one language, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateEntry {
    /// `None`: a category the gateway does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<TemplateCategory>,
    /// Meta's status: `APPROVED`, `PAUSED`, `DISABLED`, `PENDING`, `REJECTED`, ...
    pub status: String,
    /// `None`: components the gateway does not count; parameters are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

impl TemplateEntry {
    /// From Meta's listing: its category and status as Meta spells them and
    /// its `components` (absent: parameters unknown).
    pub fn from_meta(category: Option<&str>, status: &str, components: Option<&Value>) -> Self {
        Self {
            category: category.and_then(TemplateCategory::parse),
            status: status.trim().to_ascii_uppercase(),
            parameters: components.and_then(Parameters::of_components),
        }
    }

    pub fn is_approved(&self) -> bool {
        self.status == APPROVED
    }
}

/// A snapshot of one WABA's registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WabaTemplates {
    /// When it was last synced in full from Meta (Unix ms); `None`: never,
    /// and a template it does not hold is not refused.
    pub synced_ms: Option<i64>,
    /// name → language → entry.
    by_name: HashMap<String, HashMap<String, TemplateEntry>>,
}

impl WabaTemplates {
    pub fn new(
        synced_ms: Option<i64>,
        entries: impl IntoIterator<Item = (String, String, TemplateEntry)>,
    ) -> Self {
        let mut by_name: HashMap<String, HashMap<String, TemplateEntry>> = HashMap::new();
        for (name, language, entry) in entries {
            by_name.entry(name).or_default().insert(language, entry);
        }
        Self { synced_ms, by_name }
    }

    pub fn get(&self, name: &str, language: &str) -> Option<&TemplateEntry> {
        self.by_name.get(name)?.get(language)
    }

    /// The languages the template exists in, sorted.
    pub fn languages(&self, name: &str) -> Vec<&str> {
        let mut languages: Vec<&str> = self
            .by_name
            .get(name)
            .into_iter()
            .flat_map(|l| l.keys().map(String::as_str))
            .collect();
        languages.sort_unstable();
        languages
    }

    /// How many (template, language) entries it holds.
    pub fn len(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry: (name, language, entry).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &TemplateEntry)> {
        self.by_name.iter().flat_map(|(name, languages)| {
            languages
                .iter()
                .map(move |(language, entry)| (name.as_str(), language.as_str(), entry))
        })
    }
}

impl Parameters {
    /// What Meta's `components` (as `message_templates` lists them) ask of
    /// a send; `None` when one of them is something the gateway does not
    /// count (see the module's doc).
    pub fn of_components(components: &Value) -> Option<Self> {
        let mut parameters = Self::default();
        for component in components.as_array()? {
            let kind = text(component, "type")?.to_ascii_uppercase();
            match kind.as_str() {
                "HEADER" => {
                    let format = text(component, "format").unwrap_or("TEXT");
                    parameters.header = match format.to_ascii_uppercase().as_str() {
                        "TEXT" => placeholders(text(component, "text").unwrap_or("")),
                        "IMAGE" | "VIDEO" | "DOCUMENT" | "GIF" | "LOCATION" => 1,
                        _ => return None,
                    };
                }
                "BODY" => parameters.body = placeholders(text(component, "text").unwrap_or("")),
                "FOOTER" => {}
                "BUTTONS" => {
                    let buttons = component.get("buttons").and_then(Value::as_array);
                    for button in buttons.into_iter().flatten() {
                        parameters.buttons.push(button_parameters(button)?);
                    }
                }
                _ => return None,
            }
        }
        Some(parameters)
    }
}

/// What one of Meta's buttons takes: `Some(Some(n))` exactly n,
/// `Some(None)` any, `None` a button the gateway does not know.
fn button_parameters(button: &Value) -> Option<Option<usize>> {
    let kind = text(button, "type")?.to_ascii_uppercase();
    match kind.as_str() {
        "URL" => Some(Some(placeholders(text(button, "url").unwrap_or("")))),
        "COPY_CODE" | "OTP" => Some(Some(1)),
        "PHONE_NUMBER" | "VOICE_CALL" => Some(Some(0)),
        "QUICK_REPLY" | "FLOW" | "CATALOG" | "MPM" | "SPM" => Some(None),
        _ => None,
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The distinct placeholders (`{{1}}`, `{{first_name}}`) in a text.
fn placeholders(text: &str) -> usize {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = after[..close].trim();
        if !name.is_empty() {
            names.insert(name);
        }
        rest = &after[close + 2..];
    }
    names.len()
}

/// Where a send's parameters do not match the template: the field (relative
/// to the template object) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterMismatch {
    pub field: String,
    pub message: String,
}

/// Whether the `components` of a send (the template object's, `None`
/// when it has none) give each component of the template the parameters
/// `expected` says.
pub fn check_parameters(
    expected: &Parameters,
    components: Option<&Value>,
) -> Result<(), ParameterMismatch> {
    let components: &[Value] = components
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    // Given per kind: (the first component's position, parameters in all).
    let mut header: Option<(usize, usize)> = None;
    let mut body: Option<(usize, usize)> = None;
    let mut buttons: Vec<(usize, usize, usize)> = Vec::new();
    for (at, component) in components.iter().enumerate() {
        let count = component
            .get("parameters")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let kind = text(component, "type").unwrap_or("").to_ascii_lowercase();
        match kind.as_str() {
            "header" => add(&mut header, at, count),
            "body" => add(&mut body, at, count),
            "button" => buttons.push((at, button_index(component).unwrap_or(usize::MAX), count)),
            _ => {}
        }
    }
    for (what, given, wanted) in [
        ("header", header, expected.header),
        ("body", body, expected.body),
    ] {
        let count = given.map_or(0, |(_, count)| count);
        if count != wanted {
            return Err(ParameterMismatch {
                field: given.map_or_else(
                    || "components".to_owned(),
                    |(at, _)| format!("components[{at}].parameters"),
                ),
                message: format!(
                    "the template's {what} takes {wanted} parameter{}; {count} given",
                    plural(wanted)
                ),
            });
        }
    }
    for &(at, index, count) in &buttons {
        match expected.buttons.get(index) {
            None => {
                return Err(ParameterMismatch {
                    field: format!("components[{at}].index"),
                    message: format!(
                        "the template has {} button{}; there is none at this index",
                        expected.buttons.len(),
                        plural(expected.buttons.len())
                    ),
                });
            }
            Some(Some(wanted)) if *wanted != count => {
                return Err(ParameterMismatch {
                    field: format!("components[{at}].parameters"),
                    message: format!(
                        "the template's button {index} takes {wanted} parameter{}; {count} given",
                        plural(*wanted)
                    ),
                });
            }
            Some(_) => {}
        }
    }
    for (index, wanted) in expected.buttons.iter().enumerate() {
        let needs = wanted.is_some_and(|n| n > 0);
        if needs && !buttons.iter().any(|(_, given, _)| *given == index) {
            let wanted = wanted.unwrap_or(0);
            return Err(ParameterMismatch {
                field: "components".to_owned(),
                message: format!(
                    "the template's button {index} takes {wanted} parameter{}; \
                     add a button component with index {index}",
                    plural(wanted)
                ),
            });
        }
    }
    Ok(())
}

fn add(slot: &mut Option<(usize, usize)>, at: usize, count: usize) {
    match slot {
        Some((_, total)) => *total += count,
        None => *slot = Some((at, count)),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A button component's `index`: a number or a string of digits.
fn button_index(component: &Value) -> Option<usize> {
    match component.get("index")? {
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Why `/send` refuses a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateRefusal {
    #[error("no template named {name} exists in this sender's WABA")]
    Unknown { name: String },
    #[error("template {name} ({language}) is {status}, not APPROVED: Meta would refuse it")]
    NotApproved {
        name: String,
        language: String,
        status: String,
    },
    #[error("template {name} has no {language} translation; it has {available}")]
    Language {
        name: String,
        language: String,
        available: String,
    },
    #[error("template {name} ({language}): {message}")]
    Parameters {
        name: String,
        language: String,
        field: String,
        message: String,
    },
}

impl TemplateRefusal {
    /// The stable code of the `422`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "template_unknown",
            Self::NotApproved { .. } => "template_not_approved",
            Self::Language { .. } => "template_language",
            Self::Parameters { .. } => "template_parameters",
        }
    }

    /// The error Meta would answer the send with.
    pub fn meta_code(&self) -> i64 {
        match self {
            Self::Unknown { .. } | Self::Language { .. } => TEMPLATE_MISSING,
            Self::NotApproved { status, .. } => status_code(status).unwrap_or(TEMPLATE_MISSING),
            Self::Parameters { .. } => TEMPLATE_PARAMETERS,
        }
    }

    /// As a field error, its path under `prefix` (`template`,
    /// `fallback_template`).
    pub fn field_error(&self, prefix: &str) -> FieldError {
        let field = match self {
            Self::Unknown { .. } | Self::NotApproved { .. } => "name".to_owned(),
            Self::Language { .. } => "language.code".to_owned(),
            Self::Parameters { field, .. } => field.clone(),
        };
        FieldError::new(format!("{prefix}.{field}"), self.code(), self.to_string())
    }
}

/// The rule `/send` applies to a template object (`{name, language: {code},
/// components}`): the registry's entry for it when it may be sent as it is,
/// `Ok(None)` when the registry does not know it and was never synced (it
/// is not refused), or why Meta would refuse it.
pub fn check<'a>(
    registry: &'a WabaTemplates,
    template: &Value,
) -> Result<Option<&'a TemplateEntry>, TemplateRefusal> {
    let name = text(template, "name").unwrap_or("");
    let language = template
        .get("language")
        .and_then(|l| text(l, "code"))
        .unwrap_or("");
    let Some(entry) = registry.get(name, language) else {
        if registry.synced_ms.is_none() {
            return Ok(None);
        }
        let available = registry.languages(name);
        if available.is_empty() {
            return Err(TemplateRefusal::Unknown { name: name.into() });
        }
        return Err(TemplateRefusal::Language {
            name: name.into(),
            language: language.into(),
            available: available.join(", "),
        });
    };
    if !entry.is_approved() {
        return Err(TemplateRefusal::NotApproved {
            name: name.into(),
            language: language.into(),
            status: entry.status.clone(),
        });
    }
    if let Some(expected) = &entry.parameters {
        check_parameters(expected, template.get("components")).map_err(|mismatch| {
            TemplateRefusal::Parameters {
                name: name.into(),
                language: language.into(),
                field: mismatch.field,
                message: mismatch.message,
            }
        })?;
    }
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parameters(components: Value) -> Option<Parameters> {
        Parameters::of_components(&components)
    }

    #[test]
    fn categories_parse_in_any_case() {
        assert_eq!(
            TemplateCategory::parse("marketing"),
            Some(TemplateCategory::Marketing)
        );
        assert_eq!(
            TemplateCategory::parse("UTILITY"),
            Some(TemplateCategory::Utility)
        );
        assert_eq!(
            TemplateCategory::parse("Authentication"),
            Some(TemplateCategory::Authentication)
        );
        assert_eq!(TemplateCategory::parse("service"), None);
        for c in [
            TemplateCategory::Marketing,
            TemplateCategory::Utility,
            TemplateCategory::Authentication,
        ] {
            assert_eq!(TemplateCategory::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn meta_s_components_give_the_parameter_counts() {
        let order = json!([
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships {{3}}. Thanks, {{1}}!"},
            {"type": "FOOTER", "text": "Reply STOP to stop"},
            {"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Track", "url": "https://example.com/t/{{1}}"},
                {"type": "URL", "text": "Shop", "url": "https://example.com/"},
                {"type": "QUICK_REPLY", "text": "Stop"},
                {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+15550100"},
                {"type": "COPY_CODE", "example": "SAVE10"},
            ]},
        ]);
        assert_eq!(
            parameters(order),
            Some(Parameters {
                header: 1,
                body: 3,
                buttons: vec![Some(1), Some(0), None, Some(0), Some(1)],
            })
        );
        let named = json!([
            {"type": "header", "format": "image", "example": {"header_handle": ["4::aW..."]}},
            {"type": "body", "text": "Hello {{first_name}}, {{ order_id }} is ready"},
        ]);
        assert_eq!(
            parameters(named),
            Some(Parameters {
                header: 1,
                body: 2,
                ..Parameters::default()
            })
        );
        assert_eq!(
            parameters(json!([{"type": "BODY", "text": "Hello world"}])),
            Some(Parameters::default())
        );
        // An authentication template: the code goes in the body and in its button.
        let otp = json!([
            {"type": "BODY", "text": "*{{1}}* is your verification code."},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]},
        ]);
        assert_eq!(
            parameters(otp),
            Some(Parameters {
                body: 1,
                buttons: vec![Some(1)],
                ..Parameters::default()
            })
        );
    }

    #[test]
    fn components_the_gateway_does_not_count_leave_parameters_unchecked() {
        assert_eq!(
            parameters(json!([{"type": "BODY", "text": "x"}, {"type": "CAROUSEL", "cards": []}])),
            None
        );
        assert_eq!(
            parameters(json!([{"type": "HEADER", "format": "PRODUCT"}])),
            None
        );
        assert_eq!(
            parameters(json!([{"type": "BUTTONS", "buttons": [{"type": "NEW_KIND"}]}])),
            None
        );
        assert_eq!(parameters(json!({"type": "BODY"})), None);
        assert_eq!(
            TemplateEntry::from_meta(Some("utility"), "approved", None),
            TemplateEntry {
                category: Some(TemplateCategory::Utility),
                status: "APPROVED".into(),
                parameters: None,
            }
        );
    }

    fn expected() -> Parameters {
        Parameters {
            header: 1,
            body: 2,
            buttons: vec![Some(1), None],
        }
    }

    fn mismatch(components: Value) -> Result<(), (String, String)> {
        check_parameters(&expected(), Some(&components)).map_err(|m| (m.field, m.message))
    }

    fn text_parameters(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"type": "text", "text": i.to_string()}))
                .collect(),
        )
    }

    #[test]
    fn the_right_parameters_pass() {
        let good = json!([
            {"type": "header", "parameters": text_parameters(1)},
            {"type": "BODY", "parameters": text_parameters(2)},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": text_parameters(1)},
        ]);
        assert_eq!(mismatch(good), Ok(()));
        // The quick reply at index 1 may carry a payload or not.
        let with_payload = json!([
            {"type": "header", "parameters": text_parameters(1)},
            {"type": "body", "parameters": text_parameters(2)},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": text_parameters(1)},
            {"type": "button", "sub_type": "quick_reply", "index": 1,
             "parameters": [{"type": "payload", "payload": "STOP"}]},
        ]);
        assert_eq!(mismatch(with_payload), Ok(()));
        // No parameters anywhere: only a template that takes none.
        assert_eq!(check_parameters(&Parameters::default(), None), Ok(()));
        assert_eq!(
            check_parameters(&Parameters::default(), Some(&json!([]))),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_count_names_the_component() {
        let body_short = json!([
            {"type": "header", "parameters": text_parameters(1)},
            {"type": "body", "parameters": text_parameters(1)},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": text_parameters(1)},
        ]);
        let (field, message) = mismatch(body_short).expect_err("body short");
        assert_eq!(field, "components[1].parameters");
        assert!(
            message.contains("body takes 2 parameters; 1 given"),
            "{message}"
        );

        let no_header = json!([
            {"type": "body", "parameters": text_parameters(2)},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": text_parameters(1)},
        ]);
        assert_eq!(
            mismatch(no_header).map_err(|e| e.0),
            Err("components".into())
        );

        let button_extra = json!([
            {"type": "header", "parameters": text_parameters(1)},
            {"type": "body", "parameters": text_parameters(2)},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": text_parameters(2)},
        ]);
        assert_eq!(
            mismatch(button_extra).map_err(|e| e.0),
            Err("components[2].parameters".into())
        );

        let missing_button = json!([
            {"type": "header", "parameters": text_parameters(1)},
            {"type": "body", "parameters": text_parameters(2)},
        ]);
        assert_eq!(
            mismatch(missing_button).map_err(|e| e.0),
            Err("components".into())
        );

        let no_such_button = json!([
            {"type": "header", "parameters": text_parameters(1)},
            {"type": "body", "parameters": text_parameters(2)},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": text_parameters(1)},
            {"type": "button", "sub_type": "url", "index": 5, "parameters": text_parameters(1)},
        ]);
        assert_eq!(
            mismatch(no_such_button).map_err(|e| e.0),
            Err("components[3].index".into())
        );

        // Parameters for a template that takes none.
        let extra = json!([{"type": "body", "parameters": text_parameters(1)}]);
        assert_eq!(
            check_parameters(&Parameters::default(), Some(&extra)).map_err(|m| m.field),
            Err("components[0].parameters".into())
        );
    }

    fn registry(synced: bool) -> WabaTemplates {
        let approved = |category: &str, parameters| TemplateEntry {
            category: TemplateCategory::parse(category),
            status: APPROVED.into(),
            parameters: Some(parameters),
        };
        WabaTemplates::new(
            synced.then_some(1_700_000_000_000),
            [
                (
                    "hello_world".to_owned(),
                    "en_US".to_owned(),
                    approved("UTILITY", Parameters::default()),
                ),
                (
                    "order_update".to_owned(),
                    "en_US".to_owned(),
                    approved(
                        "UTILITY",
                        Parameters {
                            body: 2,
                            ..Parameters::default()
                        },
                    ),
                ),
                (
                    "order_update".to_owned(),
                    "pt_BR".to_owned(),
                    approved(
                        "UTILITY",
                        Parameters {
                            body: 2,
                            ..Parameters::default()
                        },
                    ),
                ),
                (
                    "promo".to_owned(),
                    "en_US".to_owned(),
                    TemplateEntry {
                        category: Some(TemplateCategory::Marketing),
                        status: "PAUSED".into(),
                        parameters: Some(Parameters::default()),
                    },
                ),
            ],
        )
    }

    fn refusal(registry: &WabaTemplates, template: Value) -> Option<(String, &'static str, i64)> {
        check(registry, &template).err().map(|r| {
            let error = r.field_error("template");
            (error.field.into_owned(), error.code, r.meta_code())
        })
    }

    #[test]
    fn the_registry_refuses_what_meta_would() {
        let registry = registry(true);
        let ok = check(
            &registry,
            &json!({"name": "hello_world", "language": {"code": "en_US"}}),
        )
        .expect("approved");
        assert_eq!(ok.and_then(|e| e.category), Some(TemplateCategory::Utility));
        assert_eq!(
            refusal(
                &registry,
                json!({"name": "no_such_template", "language": {"code": "en_US"}})
            ),
            Some(("template.name".into(), "template_unknown", 132_001))
        );
        assert_eq!(
            refusal(
                &registry,
                json!({"name": "promo", "language": {"code": "en_US"}})
            ),
            Some(("template.name".into(), "template_not_approved", 132_015))
        );
        assert_eq!(
            refusal(
                &registry,
                json!({"name": "order_update", "language": {"code": "de"}})
            ),
            Some((
                "template.language.code".into(),
                "template_language",
                132_001
            ))
        );
        let language = check(
            &registry,
            &json!({"name": "order_update", "language": {"code": "de"}}),
        )
        .expect_err("no German");
        assert!(language.to_string().contains("en_US, pt_BR"), "{language}");
        assert_eq!(
            refusal(
                &registry,
                json!({"name": "order_update", "language": {"code": "pt_BR"},
                       "components": [{"type": "body", "parameters": [{"type": "text", "text": "A"}]}]})
            ),
            Some((
                "template.components[0].parameters".into(),
                "template_parameters",
                132_000
            ))
        );
    }

    #[test]
    fn a_registry_never_synced_refuses_only_what_it_knows() {
        let registry = registry(false);
        assert_eq!(
            check(
                &registry,
                &json!({"name": "no_such_template", "language": {"code": "en_US"}})
            ),
            Ok(None)
        );
        assert_eq!(
            refusal(
                &registry,
                json!({"name": "promo", "language": {"code": "en_US"}})
            )
            .map(|r| r.1),
            Some("template_not_approved")
        );
        assert_eq!(
            check(&WabaTemplates::default(), &json!({"name": "x"})),
            Ok(None)
        );
    }

    #[test]
    fn meta_s_codes_say_what_became_of_the_template() {
        assert_eq!(status_code("APPROVED"), None);
        assert_eq!(status_code("paused"), Some(132_015));
        assert_eq!(status_code("DISABLED"), Some(132_016));
        assert_eq!(status_code("REJECTED"), Some(132_001));
        assert_eq!(status_code("PENDING"), Some(132_001));
        assert_eq!(status_after(132_015), Some("PAUSED"));
        assert_eq!(status_after(132_016), Some("DISABLED"));
        assert_eq!(status_after(132_001), None);
        assert_eq!(status_after(131_047), None);
        assert_eq!(status_after_event("PAUSED").as_deref(), Some("PAUSED"));
        assert_eq!(status_after_event("approved").as_deref(), Some(APPROVED));
        assert_eq!(status_after_event("REINSTATED").as_deref(), Some(APPROVED));
        assert_eq!(status_after_event("FLAGGED"), None);
    }

    #[test]
    fn an_entry_keeps_a_compact_json_form() {
        let entry = TemplateEntry {
            category: Some(TemplateCategory::Marketing),
            status: APPROVED.into(),
            parameters: Some(Parameters {
                header: 0,
                body: 2,
                buttons: vec![Some(1), None],
            }),
        };
        let text = serde_json::to_string(&entry).expect("json");
        assert_eq!(
            text,
            r#"{"category":"MARKETING","status":"APPROVED","parameters":{"body":2,"buttons":[1,null]}}"#
        );
        assert_eq!(
            serde_json::from_str::<TemplateEntry>(&text).ok(),
            Some(entry)
        );
    }
}
