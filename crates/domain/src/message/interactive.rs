//! Interactive messages: reply buttons, lists and a call-to-action URL
//! button. WhatsApp refuses the whole message when one title is a character
//! too long or two buttons share a title, so each limit in Meta's table is
//! checked here and reported at the exact button, section or row.

use std::ops::RangeInclusive;

use serde_json::Value;

use super::MessageKind;
use super::fields::{Distinct, Object};
use super::media;
use crate::FieldError;

const BODY_MAX: usize = 1024;
const FOOTER_MAX: usize = 60;
const HEADER_TEXT_MAX: usize = 60;

const BUTTONS: RangeInclusive<usize> = 1..=3;
const BUTTON_ID_MAX: usize = 256;
const BUTTON_TITLE_MAX: usize = 20;

const LIST_BUTTON_MAX: usize = 20;
const SECTIONS: RangeInclusive<usize> = 1..=10;
/// Rows in all sections together, and so also in any one section.
const ROWS_MAX: usize = 10;
const SECTION_TITLE_MAX: usize = 24;
const ROW_ID_MAX: usize = 200;
const ROW_TITLE_MAX: usize = 24;
const ROW_DESCRIPTION_MAX: usize = 72;

const CTA_DISPLAY_TEXT_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InteractiveKind {
    Button,
    List,
    CtaUrl,
}

#[derive(Debug, Clone, Copy)]
enum Header {
    Text,
    Media(MessageKind),
}

const ANY_HEADER: [(&str, Header); 4] = [
    ("text", Header::Text),
    ("image", Header::Media(MessageKind::Image)),
    ("video", Header::Media(MessageKind::Video)),
    ("document", Header::Media(MessageKind::Document)),
];
const LIST_HEADER: [(&str, Header); 1] = [("text", Header::Text)];

pub(super) fn check(value: &Value, path: &str) -> Result<(), FieldError> {
    let interactive = Object::new(value, path)?;
    let kind = interactive.choice(
        "type",
        &[
            ("button", InteractiveKind::Button),
            ("list", InteractiveKind::List),
            ("cta_url", InteractiveKind::CtaUrl),
        ],
    )?;
    if let Some(header) = interactive.optional_object("header")? {
        check_header(&header, kind)?;
    }
    interactive.object("body")?.string("text", 1..=BODY_MAX)?;
    if let Some(footer) = interactive.optional_object("footer")? {
        footer.string("text", 1..=FOOTER_MAX)?;
    }
    let action = interactive.object("action")?;
    match kind {
        InteractiveKind::Button => check_buttons(&action),
        InteractiveKind::List => check_list(&action),
        InteractiveKind::CtaUrl => check_cta_url(&action),
    }
}

/// A text header, or media by id or link. Lists take only a text header.
fn check_header(header: &Object, kind: InteractiveKind) -> Result<(), FieldError> {
    let allowed: &[(&str, Header)] = if kind == InteractiveKind::List {
        &LIST_HEADER
    } else {
        &ANY_HEADER
    };
    match header.choice("type", allowed)? {
        Header::Text => header.string("text", 1..=HEADER_TEXT_MAX).map(drop),
        Header::Media(media_kind) => {
            let key = media_kind.as_str();
            media::check(media_kind, header.required(key)?, &header.field_path(key))
        }
    }
}

/// 1 to 3 reply buttons; a tap reports the button's id, and the user tells
/// buttons apart by title, so both must be unique.
fn check_buttons(action: &Object) -> Result<(), FieldError> {
    let mut ids = Distinct::default();
    let mut titles = Distinct::default();
    for button in action.array("buttons", BUTTONS)?.objects() {
        let button = button?;
        button.choice("type", &[("reply", ())])?;
        let reply = button.object("reply")?;
        ids.check(
            reply.field_path("id"),
            reply.string("id", 1..=BUTTON_ID_MAX)?,
        )?;
        titles.check(
            reply.field_path("title"),
            reply.string("title", 1..=BUTTON_TITLE_MAX)?,
        )?;
    }
    Ok(())
}

/// A button that opens 1 to 10 sections holding at most 10 rows in all; a
/// tap reports the row's id, so row ids are unique across sections.
fn check_list(action: &Object) -> Result<(), FieldError> {
    action.string("button", 1..=LIST_BUTTON_MAX)?;
    let sections = action.array("sections", SECTIONS)?;
    // With one section WhatsApp shows no section heading; with more it does.
    let titles_required = sections.len() > 1;
    let mut row_ids = Distinct::default();
    let mut rows_total = 0;
    for section in sections.objects() {
        let section = section?;
        let title = section.optional_string("title", 1..=SECTION_TITLE_MAX)?;
        if title.is_none() && titles_required {
            let path = section.field_path("title");
            let message = format!("{path} is required when a list has more than one section");
            return Err(FieldError::new(path, "missing_field", message));
        }
        let rows = section.array("rows", 1..=ROWS_MAX)?;
        rows_total += rows.len();
        for row in rows.objects() {
            let row = row?;
            row_ids.check(row.field_path("id"), row.string("id", 1..=ROW_ID_MAX)?)?;
            row.string("title", 1..=ROW_TITLE_MAX)?;
            row.optional_string("description", 0..=ROW_DESCRIPTION_MAX)?;
        }
    }
    if rows_total > ROWS_MAX {
        let path = sections.path();
        let message = format!("{path} have {rows_total} rows in all; the limit is {ROWS_MAX}");
        return Err(FieldError::new(path.to_owned(), "too_many", message));
    }
    Ok(())
}

/// One button that opens a URL: a label and an https link.
fn check_cta_url(action: &Object) -> Result<(), FieldError> {
    action.choice("name", &[("cta_url", ())])?;
    let parameters = action.object("parameters")?;
    parameters.string("display_text", 1..=CTA_DISPLAY_TEXT_MAX)?;
    parameters.https_url("url")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::test_support::{assert_accepts, assert_rejects};

    fn button(id: &str, title: &str) -> Value {
        json!({"type": "reply", "reply": {"id": id, "title": title}})
    }

    fn buttons(buttons: Vec<Value>) -> Value {
        json!({
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Pick one"},
                "action": {"buttons": buttons},
            }
        })
    }

    fn row(id: &str) -> Value {
        json!({"id": id, "title": "Row", "description": "A row"})
    }

    fn list(sections: Value) -> Value {
        json!({
            "type": "interactive",
            "interactive": {
                "type": "list",
                "header": {"type": "text", "text": "Menu"},
                "body": {"text": "Choose"},
                "footer": {"text": "Thanks"},
                "action": {"button": "Options", "sections": sections},
            }
        })
    }

    /// `base` with `value` set at the dotted `path` (which must exist up to
    /// its last key), for one-field-off invalid cases.
    fn with(mut base: Value, path: &str, value: Value) -> Value {
        let mut target = &mut base;
        let mut keys = path.split('.').peekable();
        while let Some(key) = keys.next() {
            let next = match key.parse::<usize>() {
                Ok(i) => target.get_mut(i),
                Err(_) if keys.peek().is_none() => {
                    target
                        .as_object_mut()
                        .expect("object")
                        .insert(key.to_owned(), value);
                    return base;
                }
                Err(_) => target.get_mut(key),
            };
            target = next.expect("path exists");
        }
        *target = value;
        base
    }

    #[test]
    fn reply_buttons() {
        let meta_example = json!({
            "type": "interactive",
            "interactive": {
                "type": "button",
                "header": {"type": "image", "image": {"link": "https://example.com/h.png"}},
                "body": {"text": "Hi Pablo! Your gardening workshop is scheduled for 9am tomorrow."},
                "footer": {"text": "Lucky Shrub: Your gateway to succulents!"},
                "action": {"buttons": [
                    {"type": "reply", "reply": {"id": "change-button", "title": "Change"}},
                    {"type": "reply", "reply": {"id": "cancel-button", "title": "Cancel"}},
                ]},
            }
        });
        let three = buttons(vec![
            button("a", "A"),
            button("b", "B"),
            button("c", &"c".repeat(20)),
        ]);
        assert_accepts(&[
            ("meta's example", meta_example.clone()),
            ("three buttons, 20-character title", three),
            (
                "text header",
                with(
                    meta_example.clone(),
                    "interactive.header",
                    json!({"type": "text", "text": "h".repeat(60)}),
                ),
            ),
            (
                "document header by id",
                with(
                    meta_example.clone(),
                    "interactive.header",
                    json!({"type": "document", "document": {"id": "1", "filename": "a.pdf"}}),
                ),
            ),
            (
                "1024-character body",
                with(
                    meta_example.clone(),
                    "interactive.body.text",
                    json!("b".repeat(1024)),
                ),
            ),
            (
                "256-character id",
                buttons(vec![button(&"i".repeat(256), "A")]),
            ),
        ]);
        let four = buttons(vec![
            button("a", "A"),
            button("b", "B"),
            button("c", "C"),
            button("d", "D"),
        ]);
        assert_rejects(&[
            (
                "no buttons",
                buttons(vec![]),
                "interactive.action.buttons",
                "too_few",
            ),
            (
                "four buttons",
                four,
                "interactive.action.buttons",
                "too_many",
            ),
            (
                "21-character title",
                buttons(vec![button("a", "A"), button("b", &"t".repeat(21))]),
                "interactive.action.buttons[1].reply.title",
                "too_long",
            ),
            (
                "empty title",
                buttons(vec![button("a", "")]),
                "interactive.action.buttons[0].reply.title",
                "empty",
            ),
            (
                "257-character id",
                buttons(vec![button(&"i".repeat(257), "A")]),
                "interactive.action.buttons[0].reply.id",
                "too_long",
            ),
            (
                "same title",
                buttons(vec![
                    button("a", "Yes"),
                    button("b", "No"),
                    button("c", "Yes"),
                ]),
                "interactive.action.buttons[2].reply.title",
                "duplicate",
            ),
            (
                "same id",
                buttons(vec![button("a", "Yes"), button("a", "No")]),
                "interactive.action.buttons[1].reply.id",
                "duplicate",
            ),
            (
                "button not reply",
                buttons(vec![
                    json!({"type": "url", "reply": {"id": "a", "title": "A"}}),
                ]),
                "interactive.action.buttons[0].type",
                "invalid_value",
            ),
            (
                "button without type",
                buttons(vec![json!({"reply": {"id": "a", "title": "A"}})]),
                "interactive.action.buttons[0].type",
                "missing_field",
            ),
            (
                "button without reply",
                buttons(vec![json!({"type": "reply"})]),
                "interactive.action.buttons[0].reply",
                "missing_field",
            ),
            (
                "button a string",
                buttons(vec![json!("Yes")]),
                "interactive.action.buttons[0]",
                "invalid_type",
            ),
            (
                "buttons an object",
                with(buttons(vec![]), "interactive.action.buttons", json!({})),
                "interactive.action.buttons",
                "invalid_type",
            ),
            (
                "no body",
                with(meta_example.clone(), "interactive.body", json!({})),
                "interactive.body.text",
                "missing_field",
            ),
            (
                "body text too long",
                with(
                    meta_example.clone(),
                    "interactive.body.text",
                    json!("b".repeat(1025)),
                ),
                "interactive.body.text",
                "too_long",
            ),
            (
                "footer too long",
                with(
                    meta_example.clone(),
                    "interactive.footer.text",
                    json!("f".repeat(61)),
                ),
                "interactive.footer.text",
                "too_long",
            ),
            (
                "header text too long",
                with(
                    meta_example.clone(),
                    "interactive.header",
                    json!({"type": "text", "text": "h".repeat(61)}),
                ),
                "interactive.header.text",
                "too_long",
            ),
            (
                "header http image",
                with(
                    meta_example.clone(),
                    "interactive.header.image.link",
                    json!("http://example.com/h.png"),
                ),
                "interactive.header.image.link",
                "invalid_url",
            ),
            (
                "header image missing",
                with(
                    meta_example.clone(),
                    "interactive.header",
                    json!({"type": "image"}),
                ),
                "interactive.header.image",
                "missing_field",
            ),
            (
                "header audio",
                with(
                    meta_example.clone(),
                    "interactive.header",
                    json!({"type": "audio", "audio": {"id": "1"}}),
                ),
                "interactive.header.type",
                "invalid_value",
            ),
            (
                "no action",
                with(meta_example.clone(), "interactive.action", json!(null)),
                "interactive.action",
                "invalid_type",
            ),
            (
                "unknown interactive type",
                with(meta_example.clone(), "interactive.type", json!("carousel")),
                "interactive.type",
                "invalid_value",
            ),
            (
                "no interactive type",
                json!({"type": "interactive", "interactive": {"body": {"text": "x"}}}),
                "interactive.type",
                "missing_field",
            ),
        ]);
    }

    #[test]
    fn lists() {
        let meta_example = list(json!([
            {"title": "I want it ASAP!", "rows": [
                {"id": "priority_express", "title": "Express Shipping", "description": "Next Day to 2 Days"},
                {"id": "priority_mail", "title": "Priority Mail", "description": "1–3 Days"},
            ]},
            {"title": "I can wait a bit", "rows": [
                {"id": "usps_ground", "title": "USPS Ground", "description": "2–5 Days"},
            ]},
        ]));
        let ten_rows: Vec<Value> = (0..10).map(|i| row(&format!("r{i}"))).collect();
        let full_row =
            json!({"id": "i".repeat(200), "title": "t".repeat(24), "description": "d".repeat(72)});
        assert_accepts(&[
            ("meta's example", meta_example.clone()),
            ("one untitled section", list(json!([{"rows": [row("a")]}]))),
            (
                "ten rows",
                list(json!([{"title": "All", "rows": ten_rows}])),
            ),
            ("rows at their limits", list(json!([{"rows": [full_row]}]))),
            (
                "no description",
                list(json!([{"rows": [{"id": "a", "title": "A"}]}])),
            ),
            (
                "20-character button",
                with(
                    meta_example.clone(),
                    "interactive.action.button",
                    json!("b".repeat(20)),
                ),
            ),
        ]);
        let eleven_sections: Vec<Value> = (0..11)
            .map(|i| json!({"title": "S", "rows": [row(&format!("r{i}"))]}))
            .collect();
        let six_and_five = json!([
            {"title": "A", "rows": (0..6).map(|i| row(&format!("a{i}"))).collect::<Vec<_>>()},
            {"title": "B", "rows": (0..5).map(|i| row(&format!("b{i}"))).collect::<Vec<_>>()},
        ]);
        let eleven_rows: Vec<Value> = (0..11).map(|i| row(&format!("r{i}"))).collect();
        assert_rejects(&[
            (
                "no sections",
                list(json!([])),
                "interactive.action.sections",
                "too_few",
            ),
            (
                "eleven sections",
                list(json!(eleven_sections)),
                "interactive.action.sections",
                "too_many",
            ),
            (
                "eleven rows across sections",
                list(six_and_five),
                "interactive.action.sections",
                "too_many",
            ),
            (
                "eleven rows in one section",
                list(json!([{"rows": eleven_rows}])),
                "interactive.action.sections[0].rows",
                "too_many",
            ),
            (
                "section without rows",
                list(json!([{"title": "A", "rows": []}])),
                "interactive.action.sections[0].rows",
                "too_few",
            ),
            (
                "second section untitled",
                list(json!([{"title": "A", "rows": [row("a")]}, {"rows": [row("b")]}])),
                "interactive.action.sections[1].title",
                "missing_field",
            ),
            (
                "section title too long",
                list(json!([{"title": "s".repeat(25), "rows": [row("a")]}])),
                "interactive.action.sections[0].title",
                "too_long",
            ),
            (
                "row id repeated across sections",
                list(
                    json!([{"title": "A", "rows": [row("x")]}, {"title": "B", "rows": [row("y"), row("x")]}]),
                ),
                "interactive.action.sections[1].rows[1].id",
                "duplicate",
            ),
            (
                "row id too long",
                list(json!([{"rows": [row(&"i".repeat(201))]}])),
                "interactive.action.sections[0].rows[0].id",
                "too_long",
            ),
            (
                "row title too long",
                list(json!([{"rows": [{"id": "a", "title": "t".repeat(25)}]}])),
                "interactive.action.sections[0].rows[0].title",
                "too_long",
            ),
            (
                "row without title",
                list(json!([{"rows": [{"id": "a"}]}])),
                "interactive.action.sections[0].rows[0].title",
                "missing_field",
            ),
            (
                "description too long",
                list(json!([{"rows": [{"id": "a", "title": "A", "description": "d".repeat(73)}]}])),
                "interactive.action.sections[0].rows[0].description",
                "too_long",
            ),
            (
                "button too long",
                with(
                    meta_example.clone(),
                    "interactive.action.button",
                    json!("b".repeat(21)),
                ),
                "interactive.action.button",
                "too_long",
            ),
            (
                "no button",
                with(
                    meta_example.clone(),
                    "interactive.action.button",
                    json!(null),
                ),
                "interactive.action.button",
                "invalid_type",
            ),
            (
                "image header",
                with(
                    meta_example.clone(),
                    "interactive.header",
                    json!({"type": "image", "image": {"id": "1"}}),
                ),
                "interactive.header.type",
                "invalid_value",
            ),
        ]);
    }

    #[test]
    fn cta_url() {
        let meta_example = json!({
            "type": "interactive",
            "interactive": {
                "type": "cta_url",
                "header": {"type": "image", "image": {"link": "https://example.com/h.png"}},
                "body": {"text": "Tap the button below to see available dates."},
                "footer": {"text": "Dates subject to change."},
                "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://www.luckyshrub.com?clickID=kqDGWd24Q5TRwoEQTICY7W1JKoXvaZOXWAS7h1P76s0R7Paec4"}},
            }
        });
        assert_accepts(&[("meta's example", meta_example.clone())]);
        assert_rejects(&[
            (
                "http url",
                with(
                    meta_example.clone(),
                    "interactive.action.parameters.url",
                    json!("http://luckyshrub.com"),
                ),
                "interactive.action.parameters.url",
                "invalid_url",
            ),
            (
                "label too long",
                with(
                    meta_example.clone(),
                    "interactive.action.parameters.display_text",
                    json!("d".repeat(21)),
                ),
                "interactive.action.parameters.display_text",
                "too_long",
            ),
            (
                "wrong name",
                with(
                    meta_example.clone(),
                    "interactive.action.name",
                    json!("url"),
                ),
                "interactive.action.name",
                "invalid_value",
            ),
            (
                "no parameters",
                with(
                    meta_example.clone(),
                    "interactive.action",
                    json!({"name": "cta_url"}),
                ),
                "interactive.action.parameters",
                "missing_field",
            ),
        ]);
    }
}
