//! The template registry: which message templates exist in which language,
//! their category, how many parameters each component takes and whether
//! they may be sent. A send names a template by `{name, language: {code}}`;
//! the registry answers as Meta does: unknown name or language → 132001
//! (HTTP 404), pending or rejected → 132001, paused → 132015, disabled →
//! 132016, a wrong number of parameters → 132000: for the header (a text
//! header its placeholders, a media header one), the body, and each button
//! by its index (a URL button its placeholders, copy-code and OTP one, a
//! phone number none, a quick reply none or its payload; a button component
//! for an index the template has no button at, or none for a button that
//! needs a parameter, is wrong too). Status and category can change at run
//! time (`Sandbox::set_template_status`, `set_template_category`).

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

use crate::config::{ButtonConfig, TemplateConfig, TemplateStatus};
use crate::errors::MetaError;
use crate::locks::{read, write};

#[derive(Debug, Default)]
pub(crate) struct TemplateRegistry {
    /// name → language → template; nested so a lookup needs no allocation.
    by_name: HashMap<String, HashMap<String, TemplateConfig>>,
    /// Statuses changed at run time (`Sandbox::set_template_status`), by
    /// (name, language); empty unless a test changes one, so the send path
    /// pays one uncontended read lock.
    changed: RwLock<HashMap<(String, String), TemplateStatus>>,
    /// Categories changed at run time (`Sandbox::set_template_category`).
    recategorised: RwLock<HashMap<(String, String), String>>,
}

impl TemplateRegistry {
    pub(crate) fn new(templates: &[TemplateConfig]) -> Self {
        let mut by_name: HashMap<String, HashMap<String, TemplateConfig>> = HashMap::new();
        for template in templates {
            by_name
                .entry(template.name.clone())
                .or_default()
                .insert(template.language.clone(), template.clone());
        }
        Self {
            by_name,
            changed: RwLock::default(),
            recategorised: RwLock::default(),
        }
    }

    pub(crate) fn find(&self, name: &str, language: &str) -> Option<&TemplateConfig> {
        self.by_name.get(name)?.get(language)
    }

    /// The registered template a send may use, or Meta's reason why not.
    pub(crate) fn check(&self, used: &TemplateRef<'_>) -> Result<&TemplateConfig, MetaError> {
        let template = self
            .find(used.name, used.language)
            .ok_or_else(|| MetaError::template_missing(used.name, used.language))?;
        match self.status(template) {
            TemplateStatus::Approved => {}
            TemplateStatus::Paused => return Err(MetaError::template_paused(used.name)),
            TemplateStatus::Disabled => return Err(MetaError::template_disabled(used.name)),
            TemplateStatus::Pending | TemplateStatus::Rejected => {
                return Err(MetaError::template_missing(used.name, used.language));
            }
        }
        let mismatch = |expected: usize, given: usize| {
            (expected != given).then(|| MetaError::template_parameters(expected, given))
        };
        if let Some(error) = mismatch(template.header_takes(), used.header_parameters)
            .or_else(|| mismatch(template.body_parameters, used.body_parameters))
        {
            return Err(error);
        }
        for &(index, given) in &used.buttons {
            let button = usize::try_from(index)
                .ok()
                .and_then(|i| template.buttons.get(i));
            match button.map(ButtonConfig::takes) {
                None => return Err(MetaError::template_parameters(0, given)),
                Some(Some(expected)) if expected != given => {
                    return Err(MetaError::template_parameters(expected, given));
                }
                Some(_) => {}
            }
        }
        for (index, button) in template.buttons.iter().enumerate() {
            let needs = button.takes().unwrap_or(0);
            let given = used.buttons.iter().any(|(i, _)| *i == index as u64);
            if needs > 0 && !given {
                return Err(MetaError::template_parameters(needs, 0));
            }
        }
        Ok(template)
    }
}

impl TemplateRegistry {
    /// The template's status now: as configured, unless changed since.
    pub(crate) fn status(&self, template: &TemplateConfig) -> TemplateStatus {
        let changed = read(&self.changed);
        if changed.is_empty() {
            return template.status;
        }
        changed
            .get(&(template.name.clone(), template.language.clone()))
            .copied()
            .unwrap_or(template.status)
    }

    /// Changes a registered template's status; the one it had before, or
    /// `None` when no such template (name and language) is registered.
    pub(crate) fn set_status(
        &self,
        name: &str,
        language: &str,
        status: TemplateStatus,
    ) -> Option<TemplateStatus> {
        let template = self.find(name, language)?;
        let before = self.status(template);
        write(&self.changed).insert((name.to_owned(), language.to_owned()), status);
        Some(before)
    }

    /// The template's category now (`MARKETING`, `UTILITY`, ...): as
    /// configured, unless changed since.
    pub(crate) fn category(&self, template: &TemplateConfig) -> String {
        let recategorised = read(&self.recategorised);
        recategorised
            .get(&(template.name.clone(), template.language.clone()))
            .cloned()
            .unwrap_or_else(|| template.category.clone())
    }

    /// Whether the template is a marketing one now (the users' marketing
    /// flags apply to it).
    pub(crate) fn is_marketing(&self, template: &TemplateConfig) -> bool {
        self.category(template).eq_ignore_ascii_case("marketing")
    }

    /// Changes a registered template's category; the one it had before, or
    /// `None` when no such template is registered.
    pub(crate) fn set_category(
        &self,
        name: &str,
        language: &str,
        category: &str,
    ) -> Option<String> {
        let template = self.find(name, language)?;
        let before = self.category(template);
        write(&self.recategorised).insert(
            (name.to_owned(), language.to_owned()),
            category.to_ascii_uppercase(),
        );
        Some(before)
    }

    /// Every registered template with its status now, sorted by name and
    /// language; only those named `name` when given.
    pub(crate) fn list(&self, name: Option<&str>) -> Vec<(&TemplateConfig, TemplateStatus)> {
        let mut all: Vec<_> = self
            .by_name
            .iter()
            .filter(|(n, _)| name.is_none_or(|wanted| wanted == n.as_str()))
            .flat_map(|(_, languages)| languages.values())
            .map(|t| (t, self.status(t)))
            .collect();
        all.sort_by(|a, b| (&a.0.name, &a.0.language).cmp(&(&b.0.name, &b.0.language)));
        all
    }
}

/// What a send's `template` object asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) language: &'a str,
    pub(crate) header_parameters: usize,
    pub(crate) body_parameters: usize,
    /// (button index, parameters) of each button component.
    pub(crate) buttons: Vec<(u64, usize)>,
}

impl<'a> TemplateRef<'a> {
    /// Reads the name, the language code and the number of parameters of
    /// each component (positional or named alike); the rest of the
    /// structure is `validation`'s business.
    pub(crate) fn parse(template: &'a Value) -> Result<Self, MetaError> {
        let name = template
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| MetaError::missing_parameter("template['name'] is required"))?;
        let language = template
            .get("language")
            .and_then(|language| language.get("code"))
            .and_then(Value::as_str)
            .filter(|code| !code.is_empty())
            .ok_or_else(|| {
                MetaError::missing_parameter("template['language']['code'] is required")
            })?;
        let components = template.get("components").and_then(Value::as_array);
        let parameters = |component: &Value| {
            component
                .get("parameters")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        let of_type = |kind: &'static str| {
            components.into_iter().flatten().filter(move |component| {
                component
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
            })
        };
        let buttons = of_type("button")
            .map(|button| {
                let index = match button.get("index") {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                (index.unwrap_or(u64::MAX), parameters(button))
            })
            .collect();
        Ok(Self {
            name,
            language,
            header_parameters: of_type("header").map(parameters).sum(),
            body_parameters: of_type("body").map(parameters).sum(),
            buttons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> TemplateRegistry {
        let mut paused = TemplateConfig::new("promo", "en_US", 0);
        paused.status = TemplateStatus::Paused;
        let mut disabled = TemplateConfig::new("old", "en_US", 0);
        disabled.status = TemplateStatus::Disabled;
        TemplateRegistry::new(&[
            TemplateConfig::new("hello_world", "en_US", 0),
            TemplateConfig::new("order_update", "en_US", 2),
            TemplateConfig::new("order_update", "pt_BR", 2),
            TemplateConfig::new("shipped", "en_US", 1)
                .with_text_header(1)
                .with_button("URL", 1)
                .with_button("QUICK_REPLY", 0)
                .with_button("PHONE_NUMBER", 0),
            TemplateConfig::new("offer", "en_US", 0).with_button("COPY_CODE", 0),
            paused,
            disabled,
        ])
    }

    fn check(template: Value) -> Result<String, i64> {
        let used = TemplateRef::parse(&template).map_err(|e| e.code)?;
        registry()
            .check(&used)
            .map(|t| t.name.clone())
            .map_err(|e| e.code)
    }

    #[test]
    fn a_registered_template_with_the_right_parameters_passes() {
        assert_eq!(
            check(json!({"name": "hello_world", "language": {"code": "en_US"}})),
            Ok("hello_world".into())
        );
        let order = json!({"name": "order_update", "language": {"code": "pt_BR"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "A"}, {"type": "text", "parameter_name": "b", "text": "B"}]}
        ]});
        assert_eq!(check(order), Ok("order_update".into()));
    }

    #[test]
    fn unknown_name_or_language_is_132001_with_http_404() {
        assert_eq!(
            check(json!({"name": "nope", "language": {"code": "en_US"}})),
            Err(132_001)
        );
        assert_eq!(
            check(json!({"name": "hello_world", "language": {"code": "de"}})),
            Err(132_001)
        );
        let error = registry()
            .check(&TemplateRef {
                name: "nope",
                language: "en_US",
                header_parameters: 0,
                body_parameters: 0,
                buttons: Vec::new(),
            })
            .expect_err("unknown");
        assert_eq!(error.status, axum::http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn wrong_parameter_count_is_132000() {
        assert_eq!(
            check(json!({"name": "order_update", "language": {"code": "en_US"}})),
            Err(132_000)
        );
        let three = json!({"name": "hello_world", "language": {"code": "en_US"}, "components": [
            {"type": "BODY", "parameters": [{"type": "text", "text": "x"}]}
        ]});
        assert_eq!(check(three), Err(132_000));
    }

    #[test]
    fn header_and_button_parameters_are_counted_too() {
        let text = |t: &str| json!({"type": "text", "text": t});
        let shipped = |components: Value| json!({"name": "shipped", "language": {"code": "en_US"}, "components": components});
        let header = json!({"type": "header", "parameters": [text("A1")]});
        let body = json!({"type": "body", "parameters": [text("Ana")]});
        let url =
            json!({"type": "button", "sub_type": "url", "index": "0", "parameters": [text("x")]});
        assert_eq!(
            check(shipped(json!([header, body, url]))),
            Ok("shipped".into())
        );
        let reply = json!({"type": "button", "sub_type": "quick_reply", "index": 1,
            "parameters": [{"type": "payload", "payload": "P"}]});
        assert_eq!(
            check(shipped(json!([header, body, url, reply]))),
            Ok("shipped".into()),
            "a quick reply's payload is optional"
        );
        assert_eq!(
            check(shipped(json!([body, url]))),
            Err(132_000),
            "no header"
        );
        assert_eq!(
            check(shipped(json!([header, body]))),
            Err(132_000),
            "no url parameter"
        );
        let phone = json!({"type": "button", "sub_type": "voice_call", "index": 2, "parameters": [text("x")]});
        assert_eq!(
            check(shipped(json!([header, body, url, phone]))),
            Err(132_000)
        );
        let beyond =
            json!({"type": "button", "sub_type": "url", "index": 5, "parameters": [text("x")]});
        assert_eq!(
            check(shipped(json!([header, body, url, beyond]))),
            Err(132_000)
        );
        let code = json!({"name": "offer", "language": {"code": "en_US"}, "components": [
            {"type": "button", "sub_type": "copy_code", "index": 0,
             "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]}]});
        assert_eq!(check(code), Ok("offer".into()));
    }

    #[test]
    fn categories_change_at_run_time() {
        let registry = registry();
        let promo = registry.find("promo", "en_US").expect("registered").clone();
        assert!(!registry.is_marketing(&promo));
        assert_eq!(
            registry.set_category("promo", "en_US", "marketing"),
            Some("UTILITY".into())
        );
        assert_eq!(registry.category(&promo), "MARKETING");
        assert!(registry.is_marketing(&promo));
        assert_eq!(registry.set_category("nope", "en_US", "UTILITY"), None);
    }

    #[test]
    fn paused_and_disabled_templates_are_refused() {
        assert_eq!(
            check(json!({"name": "promo", "language": {"code": "en_US"}})),
            Err(132_015)
        );
        assert_eq!(
            check(json!({"name": "old", "language": {"code": "en_US"}})),
            Err(132_016)
        );
    }

    #[test]
    fn name_and_language_are_required() {
        assert_eq!(check(json!({"language": {"code": "en_US"}})), Err(131_008));
        assert_eq!(
            check(json!({"name": "hello_world", "language": "en_US"})),
            Err(131_008)
        );
    }
}
