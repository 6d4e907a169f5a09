//! The template registry: which message templates exist in which language,
//! how many body parameters each takes and whether it may be sent. A send
//! names a template by `{name, language: {code}}`; the registry answers as
//! Meta does: unknown name or language → 132001 (HTTP 404), paused → 132015,
//! disabled → 132016, wrong number of body parameters → 132000.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

use crate::config::{TemplateConfig, TemplateStatus};
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
        if template.body_parameters != used.body_parameters {
            return Err(MetaError::template_parameters(
                template.body_parameters,
                used.body_parameters,
            ));
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TemplateRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) language: &'a str,
    pub(crate) body_parameters: usize,
}

impl<'a> TemplateRef<'a> {
    /// Reads the name, the language code and the number of body parameters
    /// (positional or named alike); the rest of the structure is
    /// `validation`'s business.
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
        let body_parameters = template
            .get("components")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|component| {
                component
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kind.eq_ignore_ascii_case("body"))
            })
            .filter_map(|body| body.get("parameters").and_then(Value::as_array))
            .map(Vec::len)
            .sum();
        Ok(Self {
            name,
            language,
            body_parameters,
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
            {"type": "header", "parameters": [{"type": "text", "text": "not counted"}]},
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
                body_parameters: 0,
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
