//! Template messages: the only kind Meta delivers outside the 24-hour
//! window, so also what `fallback_template` and a sender's default hold. The
//! template itself (its text, its variables) lives at Meta; here we check
//! that the reference to it is well formed: a name as Meta spells names, a
//! language code, and components whose parameters each say their type.

use serde_json::Value;

use super::fields::{ANY, NON_EMPTY, Object, invalid_type, not_one_of};
use crate::FieldError;

const NAME_MAX: usize = 512;
/// A template has at most 10 buttons, indexed from 0.
const BUTTON_INDEX_MAX: u64 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Header,
    Body,
    Button,
    Footer,
}

const COMPONENTS: [(&str, Component); 4] = [
    ("header", Component::Header),
    ("body", Component::Body),
    ("button", Component::Button),
    ("footer", Component::Footer),
];

pub(super) fn check(value: &Value, path: &str) -> Result<(), FieldError> {
    let template = Object::new(value, path)?;
    let name = template.string("name", 1..=NAME_MAX)?;
    // Meta creates template names in this alphabet only; anything else
    // cannot name an approved template and would fail at send time.
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        let path = template.field_path("name");
        let message = format!("{path} may hold only lower-case letters, digits and underscores");
        return Err(FieldError::invalid(path, message));
    }
    template.object("language")?.string("code", NON_EMPTY)?;
    if let Some(components) = template.optional_array("components", ANY)? {
        for component in components.objects() {
            check_component(&component?)?;
        }
    }
    Ok(())
}

fn check_component(component: &Object) -> Result<(), FieldError> {
    // Meta accepts "BODY" as well as "body", and its docs show both.
    let name = component.string("type", ANY)?;
    let kind = COMPONENTS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, kind)| *kind)
        .ok_or_else(|| not_one_of(&component.field_path("type"), &COMPONENTS))?;
    if let Some(parameters) = component.optional_array("parameters", ANY)? {
        for parameter in parameters.objects() {
            parameter?.string("type", NON_EMPTY)?;
        }
    }
    if kind == Component::Button {
        component.string("sub_type", NON_EMPTY)?;
        check_button_index(component)?;
    }
    Ok(())
}

/// Meta's examples give the index as a string ("0"); services built from
/// typed SDKs send a number. Both mean the same position.
fn check_button_index(component: &Object) -> Result<(), FieldError> {
    let path = component.field_path("index");
    let index = match component.required("index")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        Value::String(_) => None,
        _ => return Err(invalid_type(&path, "a number or a string of digits")),
    };
    match index {
        Some(index) if index <= BUTTON_INDEX_MAX => Ok(()),
        _ => {
            let message = format!("{path} must be a whole number from 0 to {BUTTON_INDEX_MAX}");
            Err(FieldError::invalid(path, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::test_support::{assert_accepts, assert_rejects};

    fn template(template: Value) -> Value {
        json!({"type": "template", "template": template})
    }

    fn with_components(components: Value) -> Value {
        template(
            json!({"name": "order_update", "language": {"code": "en_US"}, "components": components}),
        )
    }

    #[test]
    fn templates() {
        let meta_example = template(json!({
            "name": "order_delivery_update",
            "language": {"code": "en_US", "policy": "deterministic"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/h.png"}}]},
                {"type": "body", "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Pablo"},
                    {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
                ]},
                {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "STOP"}]},
                {"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "summer2023"}]},
            ],
        }));
        assert_accepts(&[
            ("meta's example", meta_example),
            (
                "no components",
                template(json!({"name": "hello_world", "language": {"code": "en_US"}})),
            ),
            ("empty components", with_components(json!([]))),
            (
                "upper-case component types",
                with_components(
                    json!([{"type": "BODY", "parameters": [{"type": "text", "text": "x"}]}, {"type": "Button", "sub_type": "copy_code", "index": 9}]),
                ),
            ),
            (
                "component without parameters",
                with_components(json!([{"type": "body"}])),
            ),
            (
                "512-character name",
                template(json!({"name": "n".repeat(512), "language": {"code": "en"}})),
            ),
        ]);
        assert_rejects(&[
            (
                "no name",
                template(json!({"language": {"code": "en"}})),
                "template.name",
                "missing_field",
            ),
            (
                "empty name",
                template(json!({"name": "", "language": {"code": "en"}})),
                "template.name",
                "empty",
            ),
            (
                "513-character name",
                template(json!({"name": "n".repeat(513), "language": {"code": "en"}})),
                "template.name",
                "too_long",
            ),
            (
                "name with capitals",
                template(json!({"name": "Order_Update", "language": {"code": "en"}})),
                "template.name",
                "invalid_value",
            ),
            (
                "name with a space",
                template(json!({"name": "order update", "language": {"code": "en"}})),
                "template.name",
                "invalid_value",
            ),
            (
                "no language",
                template(json!({"name": "a"})),
                "template.language",
                "missing_field",
            ),
            (
                "language a string",
                template(json!({"name": "a", "language": "en"})),
                "template.language",
                "invalid_type",
            ),
            (
                "no language code",
                template(json!({"name": "a", "language": {}})),
                "template.language.code",
                "missing_field",
            ),
            (
                "components an object",
                with_components(json!({"type": "body"})),
                "template.components",
                "invalid_type",
            ),
            (
                "component a string",
                with_components(json!(["body"])),
                "template.components[0]",
                "invalid_type",
            ),
            (
                "component without type",
                with_components(json!([{"parameters": []}])),
                "template.components[0].type",
                "missing_field",
            ),
            (
                "unknown component",
                with_components(json!([{"type": "body"}, {"type": "carousel"}])),
                "template.components[1].type",
                "invalid_value",
            ),
            (
                "parameters an object",
                with_components(json!([{"type": "body", "parameters": {"type": "text"}}])),
                "template.components[0].parameters",
                "invalid_type",
            ),
            (
                "parameter a string",
                with_components(json!([{"type": "body", "parameters": ["Pablo"]}])),
                "template.components[0].parameters[0]",
                "invalid_type",
            ),
            (
                "parameter without type",
                with_components(
                    json!([{"type": "body", "parameters": [{"type": "text", "text": "a"}, {"text": "b"}]}]),
                ),
                "template.components[0].parameters[1].type",
                "missing_field",
            ),
            (
                "button without sub_type",
                with_components(json!([{"type": "button", "index": 0}])),
                "template.components[0].sub_type",
                "missing_field",
            ),
            (
                "button without index",
                with_components(json!([{"type": "button", "sub_type": "url"}])),
                "template.components[0].index",
                "missing_field",
            ),
            (
                "index 10",
                with_components(json!([{"type": "button", "sub_type": "url", "index": 10}])),
                "template.components[0].index",
                "invalid_value",
            ),
            (
                "index \"10\"",
                with_components(json!([{"type": "button", "sub_type": "url", "index": "10"}])),
                "template.components[0].index",
                "invalid_value",
            ),
            (
                "index -1",
                with_components(json!([{"type": "button", "sub_type": "url", "index": -1}])),
                "template.components[0].index",
                "invalid_value",
            ),
            (
                "index 1.5",
                with_components(json!([{"type": "button", "sub_type": "url", "index": 1.5}])),
                "template.components[0].index",
                "invalid_value",
            ),
            (
                "index \"+1\"",
                with_components(json!([{"type": "button", "sub_type": "url", "index": "+1"}])),
                "template.components[0].index",
                "invalid_value",
            ),
            (
                "index \"\"",
                with_components(json!([{"type": "button", "sub_type": "url", "index": ""}])),
                "template.components[0].index",
                "invalid_value",
            ),
            (
                "index true",
                with_components(json!([{"type": "button", "sub_type": "url", "index": true}])),
                "template.components[0].index",
                "invalid_type",
            ),
        ]);
    }
}
