//! Reading and checking a send request before any limit applies, so that a
//! rejected request uses no quota.
//!
//! `parse` always reads the envelope (who, what type, callback data); with
//! `deep` (the `validation` rule) it also checks the message object against
//! Meta's limits. Codes follow how Meta reports each kind of mistake:
//! - 100 for Graph's own parameter checks: the envelope (`messaging_product`,
//!   `recipient_type`, `to`/`recipient`, `type`, `context`,
//!   `biz_opaque_callback_data`) and `text` ("Param text['body'] must be at
//!   most 4096 characters long");
//! - 131008 when a required part inside a message object is missing;
//! - 131009 when a value inside a message object breaks Meta's limits.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use serde_json::Value;

use crate::errors::MetaError;
use crate::templates::TemplateRef;
use crate::user_id::UserId;

const TEXT_BODY: RangeInclusive<usize> = 1..=4096;
const CALLBACK_DATA_MAX: usize = 512;
const CAPTION_MAX: usize = 1024;
const INTERACTIVE_BODY: RangeInclusive<usize> = 1..=1024;
const FOOTER_MAX: usize = 60;
const HEADER_TEXT_MAX: usize = 60;
const REPLY_BUTTONS: RangeInclusive<usize> = 1..=3;
const BUTTON_TITLE: RangeInclusive<usize> = 1..=20;
const BUTTON_ID: RangeInclusive<usize> = 1..=256;
const LIST_BUTTON: RangeInclusive<usize> = 1..=20;
const LIST_SECTIONS: RangeInclusive<usize> = 1..=10;
const LIST_ROWS: RangeInclusive<usize> = 1..=10;
const ROW_TITLE: RangeInclusive<usize> = 1..=24;
const ROW_DESCRIPTION_MAX: usize = 72;
const ROW_ID: RangeInclusive<usize> = 1..=200;
const SECTION_TITLE_MAX: usize = 24;
const TEMPLATE_BUTTON_INDEX: RangeInclusive<u64> = 0..=9;

type Checked<T = ()> = Result<T, MetaError>;

/// A send request as far as the sandbox's rules need to know it.
#[derive(Debug)]
pub(crate) struct Outbound<'a> {
    pub(crate) user: UserId,
    /// `to` or `recipient` as the caller wrote it, echoed in `contacts`.
    pub(crate) input: &'a str,
    pub(crate) template: Option<TemplateRef<'a>>,
}

impl Outbound<'_> {
    pub(crate) fn is_template(&self) -> bool {
        self.template.is_some()
    }
}

pub(crate) fn parse(body: &Value, deep: bool) -> Checked<Outbound<'_>> {
    if !body.is_object() {
        return Err(MetaError::invalid_parameter(
            "The request body must be a JSON object",
        ));
    }
    let request = body;
    match request.get("messaging_product") {
        Some(Value::String(product)) if product == "whatsapp" => {}
        Some(_) => {
            return Err(MetaError::invalid_parameter(
                "Param messaging_product must be \"whatsapp\"",
            ));
        }
        None => {
            return Err(MetaError::invalid_parameter(
                "The parameter messaging_product is required.",
            ));
        }
    }
    if let Some(kind) = request.get("recipient_type")
        && kind.as_str() != Some("individual")
    {
        return Err(MetaError::invalid_parameter(
            "Param recipient_type must be \"individual\"",
        ));
    }
    let (user, input) = recipient(request)?;
    let message_type = match request.get("type") {
        None => "text",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(MetaError::invalid_parameter("Param type must be a string")),
    };
    match request.get("biz_opaque_callback_data") {
        None | Some(Value::Null) => {}
        Some(Value::String(data)) if data.chars().count() <= CALLBACK_DATA_MAX => {}
        Some(_) => {
            return Err(MetaError::invalid_parameter(
                "Param biz_opaque_callback_data must be a string of at most 512 characters",
            ));
        }
    }
    let template = if message_type == "template" {
        Some(TemplateRef::parse(required(
            request, "template", "template",
        )?)?)
    } else {
        None
    };
    if deep {
        context(request)?;
        message(request, message_type)?;
    }
    Ok(Outbound {
        user,
        input,
        template,
    })
}

/// `to` is a phone number; `recipient` a business-scoped user id. When both
/// are given the phone number keys the user, as it is the older identity.
fn recipient(request: &Value) -> Checked<(UserId, &str)> {
    let field = |name: &str| match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.as_str())),
        Some(_) => Err(MetaError::invalid_parameter(format!(
            "Param {name} must be a string"
        ))),
    };
    if let Some(to) = field("to")? {
        let user = UserId::parse_phone(to)
            .ok_or_else(|| MetaError::invalid_parameter("Param to must be a phone number"))?;
        return Ok((user, to));
    }
    if let Some(id) = field("recipient")? {
        let user = UserId::parse_scoped(id).ok_or_else(|| {
            MetaError::invalid_parameter("Param recipient must be a business-scoped user id")
        })?;
        return Ok((user, id));
    }
    Err(MetaError::invalid_parameter(
        "The parameter to is required.",
    ))
}

fn context(request: &Value) -> Checked {
    match request.get("context") {
        None => Ok(()),
        Some(context) if context.get("message_id").and_then(Value::as_str).is_some() => Ok(()),
        Some(_) => Err(MetaError::invalid_parameter(
            "Param context['message_id'] must be a string",
        )),
    }
}

fn message(request: &Value, message_type: &str) -> Checked {
    match message_type {
        "text" => text(request),
        "image" | "video" | "document" => media(
            required(request, message_type, message_type)?,
            message_type,
            true,
        ),
        "audio" | "sticker" => media(
            required(request, message_type, message_type)?,
            message_type,
            false,
        ),
        "interactive" => interactive(required(request, "interactive", "interactive")?),
        "template" => template(required(request, "template", "template")?),
        "location" => location(required(request, "location", "location")?),
        "contacts" => contacts(request),
        "reaction" => reaction(required(request, "reaction", "reaction")?),
        other => Err(MetaError::invalid_parameter(format!(
            "Unsupported message type: {other}"
        ))),
    }
}

fn text(request: &Value) -> Checked {
    let text = request.get("text");
    let body = text
        .and_then(|text| text.get("body"))
        .ok_or_else(|| MetaError::invalid_parameter("The parameter text['body'] is required."))?;
    let length = body
        .as_str()
        .map(|body| body.chars().count())
        .ok_or_else(|| MetaError::invalid_parameter("Param text['body'] must be a string"))?;
    if length < *TEXT_BODY.start() {
        return Err(MetaError::invalid_parameter(
            "Param text['body'] must be at least 1 character long.",
        ));
    }
    if length > *TEXT_BODY.end() {
        return Err(MetaError::invalid_parameter(
            "Param text['body'] must be at most 4096 characters long.",
        ));
    }
    match text.and_then(|text| text.get("preview_url")) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(MetaError::invalid_parameter(
            "Param text['preview_url'] must be a boolean",
        )),
    }
}

/// A media object: an uploaded media `id` or an https `link`.
fn media(object: &Value, path: &str, has_caption: bool) -> Checked {
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    let link = object.get("link").and_then(Value::as_str);
    match (id, link) {
        (None, None) => {
            return Err(MetaError::missing_parameter(format!(
                "{path}['id'] or {path}['link'] is required"
            )));
        }
        (_, Some(link)) if !is_https_url(link) => {
            return Err(MetaError::invalid_value(format!(
                "{path}['link'] must be an https URL"
            )));
        }
        _ => {}
    }
    if has_caption {
        optional_text(object, "caption", path, CAPTION_MAX)?;
    }
    Ok(())
}

fn is_https_url(link: &str) -> bool {
    link.strip_prefix("https://")
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace))
}

fn interactive(interactive: &Value) -> Checked {
    let kind = required_str(interactive, "type", "interactive")?;
    let needs_body = matches!(
        kind,
        "button" | "list" | "cta_url" | "flow" | "product_list"
    );
    match interactive.get("body") {
        Some(body) => {
            text_in(body, "text", "interactive['body']", INTERACTIVE_BODY)?;
        }
        None if needs_body => return Err(missing("interactive['body']")),
        None => {}
    }
    if let Some(footer) = interactive.get("footer") {
        text_in(footer, "text", "interactive['footer']", 1..=FOOTER_MAX)?;
    }
    if let Some(header) = interactive.get("header") {
        interactive_header(header)?;
    }
    let action = required(interactive, "action", "interactive")?;
    match kind {
        "button" => reply_buttons(action),
        "list" => list(action),
        "cta_url" => cta_url(action),
        "flow"
        | "product"
        | "product_list"
        | "catalog_message"
        | "location_request_message"
        | "address_message"
        | "call_permission_request" => Ok(()),
        other => Err(MetaError::invalid_value(format!(
            "Unsupported interactive type: {other}"
        ))),
    }
}

fn interactive_header(header: &Value) -> Checked {
    match required_str(header, "type", "interactive['header']")? {
        "text" => text_in(header, "text", "interactive['header']", 1..=HEADER_TEXT_MAX).map(|_| ()),
        kind @ ("image" | "video" | "document") => media(
            required(header, kind, "interactive['header']")?,
            kind,
            false,
        ),
        other => Err(MetaError::invalid_value(format!(
            "Unsupported header type: {other}"
        ))),
    }
}

fn reply_buttons(action: &Value) -> Checked {
    let buttons = required_array(action, "buttons", "interactive['action']")?;
    if !REPLY_BUTTONS.contains(&buttons.len()) {
        return Err(MetaError::invalid_value(
            "Buttons count is invalid. Min: 1, Max: 3",
        ));
    }
    let mut titles = HashSet::with_capacity(buttons.len());
    for button in buttons {
        if required_str(button, "type", "button")? != "reply" {
            return Err(MetaError::invalid_value("Button type must be \"reply\""));
        }
        let reply = required(button, "reply", "button")?;
        let title = text_in(reply, "title", "button['reply']", BUTTON_TITLE).map_err(|e| {
            relabel(
                e,
                "Button title length invalid. Min length: 1, Max length: 20",
            )
        })?;
        text_in(reply, "id", "button['reply']", BUTTON_ID)?;
        if !titles.insert(title) {
            return Err(MetaError::invalid_value("Button titles must be unique"));
        }
    }
    Ok(())
}

fn list(action: &Value) -> Checked {
    text_in(action, "button", "interactive['action']", LIST_BUTTON)?;
    let sections = required_array(action, "sections", "interactive['action']")?;
    if !LIST_SECTIONS.contains(&sections.len()) {
        return Err(MetaError::invalid_value(
            "Sections count is invalid. Min: 1, Max: 10",
        ));
    }
    let mut row_ids = HashSet::new();
    for section in sections {
        if sections.len() > 1 {
            text_in(section, "title", "section", 1..=SECTION_TITLE_MAX)?;
        } else {
            optional_text(section, "title", "section", SECTION_TITLE_MAX)?;
        }
        for row in required_array(section, "rows", "section")? {
            let id = text_in(row, "id", "row", ROW_ID)?;
            text_in(row, "title", "row", ROW_TITLE)?;
            optional_text(row, "description", "row", ROW_DESCRIPTION_MAX)?;
            if !row_ids.insert(id) {
                return Err(MetaError::invalid_value("Row ids must be unique"));
            }
        }
    }
    if !LIST_ROWS.contains(&row_ids.len()) {
        return Err(MetaError::invalid_value(
            "Rows count is invalid. Min: 1, Max: 10 in total",
        ));
    }
    Ok(())
}

fn cta_url(action: &Value) -> Checked {
    let parameters = required(action, "parameters", "interactive['action']")?;
    text_in(
        parameters,
        "display_text",
        "interactive['action']['parameters']",
        BUTTON_TITLE,
    )?;
    if !is_https_url(required_str(
        parameters,
        "url",
        "interactive['action']['parameters']",
    )?) {
        return Err(MetaError::invalid_value(
            "interactive['action']['parameters']['url'] must be an https URL",
        ));
    }
    Ok(())
}

/// The structure of a template send; the name, language and parameter
/// count are the registry's business.
fn template(template: &Value) -> Checked {
    let Some(components) = template.get("components") else {
        return Ok(());
    };
    let components = components
        .as_array()
        .ok_or_else(|| MetaError::invalid_value("template['components'] must be an array"))?;
    for component in components {
        let kind = required_str(component, "type", "component")?.to_ascii_lowercase();
        match kind.as_str() {
            "header" | "body" | "footer" | "carousel" | "limited_time_offer" => {}
            "button" => template_button(component)?,
            other => {
                return Err(MetaError::invalid_value(format!(
                    "Unsupported component type: {other}"
                )));
            }
        }
        match component.get("parameters") {
            None => {}
            Some(Value::Array(parameters)) => parameters.iter().try_for_each(template_parameter)?,
            Some(_) => {
                return Err(MetaError::invalid_value(
                    "component['parameters'] must be an array",
                ));
            }
        }
    }
    Ok(())
}

fn template_button(component: &Value) -> Checked {
    required_str(component, "sub_type", "button component")?;
    let index = component
        .get("index")
        .ok_or_else(|| missing("button component['index']"))?;
    let index = match index {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match index {
        Some(i) if TEMPLATE_BUTTON_INDEX.contains(&i) => Ok(()),
        _ => Err(MetaError::invalid_value(
            "button component['index'] must be 0 to 9",
        )),
    }
}

fn template_parameter(parameter: &Value) -> Checked {
    let kind = required_str(parameter, "type", "parameter")?;
    match kind {
        "text" | "payload" | "coupon_code" => {
            required_str(parameter, kind, "parameter")?;
        }
        "currency" => {
            let currency = required(parameter, "currency", "parameter")?;
            required_str(currency, "fallback_value", "parameter['currency']")?;
            required_str(currency, "code", "parameter['currency']")?;
            if currency
                .get("amount_1000")
                .and_then(Value::as_i64)
                .is_none()
            {
                return Err(missing("parameter['currency']['amount_1000']"));
            }
        }
        "date_time" => {
            required_str(
                required(parameter, "date_time", "parameter")?,
                "fallback_value",
                "parameter['date_time']",
            )?;
        }
        "image" | "video" | "document" => {
            media(required(parameter, kind, "parameter")?, kind, false)?
        }
        "location" | "action" | "product" | "order_status" => {
            required(parameter, kind, "parameter")?;
        }
        other => {
            return Err(MetaError::invalid_value(format!(
                "Unsupported parameter type: {other}"
            )));
        }
    }
    Ok(())
}

fn location(location: &Value) -> Checked {
    for coordinate in ["latitude", "longitude"] {
        if !location
            .get(coordinate)
            .is_some_and(|v| v.is_number() || v.is_string())
        {
            return Err(missing(&format!("location['{coordinate}']")));
        }
    }
    Ok(())
}

fn contacts(request: &Value) -> Checked {
    match request.get("contacts").and_then(Value::as_array) {
        Some(contacts) if !contacts.is_empty() => Ok(()),
        _ => Err(missing("contacts")),
    }
}

fn reaction(reaction: &Value) -> Checked {
    required_str(reaction, "message_id", "reaction")?;
    // An empty emoji removes a reaction, so only its presence is required.
    reaction
        .get("emoji")
        .and_then(Value::as_str)
        .map(|_| ())
        .ok_or_else(|| missing("reaction['emoji']"))
}

fn missing(path: &str) -> MetaError {
    MetaError::missing_parameter(format!("{path} is required"))
}

fn relabel(error: MetaError, details: &'static str) -> MetaError {
    if error.code == 131_009 {
        MetaError::invalid_value(details)
    } else {
        error
    }
}

fn required<'a>(parent: &'a Value, key: &str, path: &str) -> Checked<&'a Value> {
    parent
        .get(key)
        .ok_or_else(|| missing(&format!("{path}['{key}']")))
}

fn required_str<'a>(parent: &'a Value, key: &str, path: &str) -> Checked<&'a str> {
    required(parent, key, path)?
        .as_str()
        .ok_or_else(|| MetaError::invalid_value(format!("{path}['{key}'] must be a string")))
}

fn required_array<'a>(parent: &'a Value, key: &str, path: &str) -> Checked<&'a Vec<Value>> {
    required(parent, key, path)?
        .as_array()
        .ok_or_else(|| MetaError::invalid_value(format!("{path}['{key}'] must be an array")))
}

/// A required string whose length in characters lies in `range`.
fn text_in<'a>(
    parent: &'a Value,
    key: &str,
    path: &str,
    range: RangeInclusive<usize>,
) -> Checked<&'a str> {
    let text = required_str(parent, key, path)?;
    if range.contains(&text.chars().count()) {
        Ok(text)
    } else {
        Err(MetaError::invalid_value(format!(
            "{path}['{key}'] must be {} to {} characters long",
            range.start(),
            range.end()
        )))
    }
}

fn optional_text(parent: &Value, key: &str, path: &str, max: usize) -> Checked {
    match parent.get(key) {
        None => Ok(()),
        Some(_) => text_in(parent, key, path, 0..=max).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn send(message: Value) -> Value {
        let mut body = json!({"messaging_product": "whatsapp", "to": "+1 (650) 555-1234"});
        if let (Some(body), Some(message)) = (body.as_object_mut(), message.as_object()) {
            body.extend(message.clone());
        }
        body
    }

    fn code(message: Value) -> Option<i64> {
        parse(&send(message), true).err().map(|e| e.code)
    }

    fn reply_button(id: &str, title: &str) -> Value {
        json!({"type": "reply", "reply": {"id": id, "title": title}})
    }

    fn buttons(buttons: Vec<Value>) -> Value {
        json!({"type": "interactive", "interactive": {
            "type": "button", "body": {"text": "Pick one"}, "action": {"buttons": buttons}}})
    }

    fn list_with(sections: Value) -> Value {
        json!({"type": "interactive", "interactive": {
            "type": "list", "body": {"text": "Choose"}, "action": {"button": "Options", "sections": sections}}})
    }

    fn rows(n: usize, prefix: &str) -> Value {
        (0..n)
            .map(|i| json!({"id": format!("{prefix}{i}"), "title": format!("Row {i}")}))
            .collect()
    }

    #[test]
    fn envelope_is_read_and_keyed_by_digits() {
        let body = send(json!({"text": {"body": "hi"}, "biz_opaque_callback_data": "x"}));
        let outbound = parse(&body, true).expect("valid");
        assert_eq!(outbound.user.key(), "16505551234");
        assert_eq!(outbound.input, "+1 (650) 555-1234");
        assert!(!outbound.is_template());

        let bsuid = json!({"messaging_product": "whatsapp", "recipient": "US.13491208655302741918",
                           "type": "text", "text": {"body": "hi"}});
        assert_eq!(
            parse(&bsuid, true).expect("valid").user.key(),
            "US.13491208655302741918"
        );
    }

    #[test]
    fn envelope_errors_are_code_100() {
        let cases = [
            json!([]),
            json!({"to": "16505551234", "text": {"body": "x"}}),
            json!({"messaging_product": "sms", "to": "16505551234", "text": {"body": "x"}}),
            json!({"messaging_product": "whatsapp", "text": {"body": "x"}}),
            json!({"messaging_product": "whatsapp", "to": "not a number", "text": {"body": "x"}}),
            json!({"messaging_product": "whatsapp", "recipient": "16505551234", "text": {"body": "x"}}),
            json!({"messaging_product": "whatsapp", "to": "16505551234", "recipient_type": "group", "text": {"body": "x"}}),
            json!({"messaging_product": "whatsapp", "to": "16505551234", "type": 5}),
            json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "fax"}),
            json!({"messaging_product": "whatsapp", "to": "16505551234", "text": {"body": "x"},
                   "biz_opaque_callback_data": "y".repeat(513)}),
            json!({"messaging_product": "whatsapp", "to": "16505551234", "text": {"body": "x"}, "context": {}}),
        ];
        for case in cases {
            assert_eq!(
                parse(&case, true).err().map(|e| e.code),
                Some(100),
                "{case}"
            );
        }
    }

    #[test]
    fn text_body_is_1_to_4096_characters() {
        assert_eq!(
            code(json!({"text": {"body": "é".repeat(4096)}})),
            None,
            "characters, not bytes"
        );
        assert_eq!(code(json!({"text": {"body": "a".repeat(4097)}})), Some(100));
        assert_eq!(code(json!({"text": {"body": ""}})), Some(100));
        assert_eq!(code(json!({"text": {}})), Some(100));
        assert_eq!(
            code(json!({"text": {"body": "x", "preview_url": "yes"}})),
            Some(100)
        );
        assert_eq!(
            code(json!({"text": {"body": "x", "preview_url": true}})),
            None
        );
    }

    #[test]
    fn without_deep_validation_only_the_envelope_is_checked() {
        let body = send(json!({"text": {"body": "a".repeat(5000)}}));
        assert!(parse(&body, false).is_ok());
        assert!(parse(&json!({"to": "16505551234"}), false).is_err());
    }

    #[test]
    fn reply_buttons_follow_metas_limits() {
        assert_eq!(
            code(buttons(vec![
                reply_button("a", "Yes"),
                reply_button("b", "No")
            ])),
            None
        );
        assert_eq!(code(buttons(vec![])), Some(131_009));
        assert_eq!(
            code(buttons(
                (0..4)
                    .map(|i| reply_button(&i.to_string(), &format!("B{i}")))
                    .collect()
            )),
            Some(131_009)
        );
        assert_eq!(
            code(buttons(vec![reply_button("a", &"t".repeat(20))])),
            None
        );
        assert_eq!(
            code(buttons(vec![reply_button("a", &"t".repeat(21))])),
            Some(131_009)
        );
        assert_eq!(code(buttons(vec![reply_button("a", "")])), Some(131_009));
        assert_eq!(
            code(buttons(vec![
                reply_button("a", "Same"),
                reply_button("b", "Same")
            ])),
            Some(131_009)
        );
        assert_eq!(
            code(buttons(vec![reply_button(&"i".repeat(257), "Yes")])),
            Some(131_009)
        );
        assert_eq!(
            code(buttons(vec![
                json!({"type": "reply", "reply": {"id": "a"}})
            ])),
            Some(131_008)
        );
    }

    #[test]
    fn interactive_body_footer_and_action_are_checked() {
        let mut message = buttons(vec![reply_button("a", "Yes")]);
        message["interactive"]["body"]["text"] = json!("b".repeat(1025));
        assert_eq!(code(message.clone()), Some(131_009));
        message["interactive"]["body"]["text"] = json!("b".repeat(1024));
        assert_eq!(code(message.clone()), None);
        message["interactive"]["footer"] = json!({"text": "f".repeat(61)});
        assert_eq!(code(message.clone()), Some(131_009));
        message["interactive"]["footer"] = json!({"text": "f".repeat(60)});
        message["interactive"]["header"] =
            json!({"type": "image", "image": {"link": "http://x.example/a.png"}});
        assert_eq!(code(message.clone()), Some(131_009));
        message["interactive"]["header"] =
            json!({"type": "image", "image": {"link": "https://x.example/a.png"}});
        assert_eq!(code(message.clone()), None);
        if let Some(interactive) = message["interactive"].as_object_mut() {
            interactive.remove("body");
        }
        assert_eq!(code(message.clone()), Some(131_008));
        assert_eq!(code(json!({"type": "interactive"})), Some(131_008));
    }

    #[test]
    fn lists_follow_metas_limits() {
        assert_eq!(
            code(list_with(json!([{"rows": rows(10, "r")}]))),
            None,
            "one untitled section"
        );
        assert_eq!(
            code(list_with(json!([{"rows": rows(11, "r")}]))),
            Some(131_009)
        );
        assert_eq!(
            code(list_with(
                json!([{"title": "A", "rows": rows(5, "a")}, {"title": "B", "rows": rows(5, "b")}])
            )),
            None
        );
        assert_eq!(
            code(list_with(
                json!([{"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}])
            )),
            Some(131_009),
            "ten rows in total"
        );
        assert_eq!(
            code(list_with(
                json!([{"rows": rows(1, "a")}, {"title": "B", "rows": rows(1, "b")}])
            )),
            Some(131_008)
        );
        let eleven: Vec<Value> = (0..11)
            .map(|i| json!({"title": format!("S{i}"), "rows": rows(0, "x")}))
            .collect();
        assert_eq!(code(list_with(json!(eleven))), Some(131_009));
        assert_eq!(
            code(list_with(
                json!([{"title": "s".repeat(25), "rows": rows(1, "a")}])
            )),
            Some(131_009)
        );
        assert_eq!(
            code(list_with(
                json!([{"rows": [{"id": "a", "title": "t".repeat(25)}]}])
            )),
            Some(131_009)
        );
        assert_eq!(
            code(list_with(
                json!([{"rows": [{"id": "a", "title": "t", "description": "d".repeat(73)}]}])
            )),
            Some(131_009)
        );
        assert_eq!(
            code(list_with(
                json!([{"rows": [{"id": "i".repeat(201), "title": "t"}]}])
            )),
            Some(131_009)
        );
        assert_eq!(
            code(list_with(
                json!([{"rows": [{"id": "a", "title": "t"}, {"id": "a", "title": "u"}]}])
            )),
            Some(131_009)
        );
        let mut long_button = list_with(json!([{"rows": rows(1, "a")}]));
        long_button["interactive"]["action"]["button"] = json!("b".repeat(21));
        assert_eq!(code(long_button), Some(131_009));
    }

    #[test]
    fn media_needs_an_id_or_an_https_link() {
        assert_eq!(
            code(json!({"type": "image", "image": {"id": "1234"}})),
            None
        );
        assert_eq!(
            code(
                json!({"type": "document", "document": {"link": "https://x.example/a.pdf", "filename": "a.pdf"}})
            ),
            None
        );
        assert_eq!(
            code(json!({"type": "image", "image": {"link": "http://x.example/a.png"}})),
            Some(131_009)
        );
        assert_eq!(
            code(json!({"type": "image", "image": {"link": "https:///a.png"}})),
            Some(131_009)
        );
        assert_eq!(code(json!({"type": "audio", "audio": {}})), Some(131_008));
        assert_eq!(code(json!({"type": "video"})), Some(131_008));
        assert_eq!(
            code(json!({"type": "image", "image": {"id": "1", "caption": "c".repeat(1025)}})),
            Some(131_009)
        );
    }

    #[test]
    fn template_structure_is_checked() {
        let good = json!({"type": "template", "template": {"name": "t", "language": {"code": "en_US"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "A"},
                {"type": "currency", "currency": {"fallback_value": "$1", "code": "USD", "amount_1000": 1000}}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "p"}]}
        ]}});
        assert_eq!(code(good), None);
        let with = |component: Value| json!({"type": "template", "template": {"name": "t", "language": {"code": "en"}, "components": [component]}});
        assert_eq!(
            code(with(json!({"type": "button", "index": 0}))),
            Some(131_008),
            "sub_type"
        );
        assert_eq!(
            code(with(json!({"type": "button", "sub_type": "url"}))),
            Some(131_008),
            "index"
        );
        assert_eq!(
            code(with(
                json!({"type": "button", "sub_type": "url", "index": 10})
            )),
            Some(131_009)
        );
        assert_eq!(
            code(with(
                json!({"type": "body", "parameters": [{"type": "text"}]})
            )),
            Some(131_008)
        );
        assert_eq!(
            code(with(json!({"type": "body", "parameters": [{"text": "x"}]}))),
            Some(131_008)
        );
        assert_eq!(
            code(with(
                json!({"type": "body", "parameters": [{"type": "hologram"}]})
            )),
            Some(131_009)
        );
        assert_eq!(code(with(json!({"type": "sidebar"}))), Some(131_009));
        assert_eq!(
            code(with(
                json!({"type": "header", "parameters": [{"type": "image", "image": {"link": "ftp://x"}}]})
            )),
            Some(131_009)
        );
        assert_eq!(code(json!({"type": "template"})), Some(131_008));
        assert_eq!(
            code(json!({"type": "template", "template": {"name": "t"}})),
            Some(131_008)
        );
    }

    #[test]
    fn other_message_types_need_their_required_fields() {
        assert_eq!(
            code(json!({"type": "location", "location": {"latitude": 1.0, "longitude": 2.0}})),
            None
        );
        assert_eq!(
            code(json!({"type": "location", "location": {"latitude": 1.0}})),
            Some(131_008)
        );
        assert_eq!(
            code(json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"}}]})),
            None
        );
        assert_eq!(
            code(json!({"type": "contacts", "contacts": []})),
            Some(131_008)
        );
        assert_eq!(
            code(json!({"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": ""}})),
            None
        );
        assert_eq!(
            code(json!({"type": "reaction", "reaction": {"emoji": "x"}})),
            Some(131_008)
        );
    }
}
