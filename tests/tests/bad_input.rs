//! Bad input gets the right 4xx with the field named, and nothing is queued.

use gateway_tests::{GatewayOptions, KEY_ALL, KEY_ONE, TestGateway};
use serde_json::{Value, json};

fn text(body: &str) -> Value {
    json!({"from": "s0", "to": "+16505551234", "type": "text", "text": {"body": body}})
}

fn buttons(count: usize) -> Value {
    let buttons: Vec<Value> = (0..count)
        .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("Option {i}")}}))
        .collect();
    json!({"from": "s0", "to": "+16505551234", "type": "interactive",
        "interactive": {"type": "button", "body": {"text": "Pick one"}, "action": {"buttons": buttons}}})
}

struct Case {
    name: &'static str,
    key: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    field: Option<&'static str>,
}

fn case(name: &'static str, body: Value, status: u16, field: &'static str) -> Case {
    Case {
        name,
        key: Some(KEY_ALL),
        body: body.to_string().into_bytes(),
        status,
        code: None,
        field: Some(field),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named_and_nothing_queued() {
    // No worker: whatever reached the queue would still be there to count.
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        start_worker: false,
        max_body_bytes: 16_384,
        ..Default::default()
    })
    .await;
    let good = text("hello").to_string().into_bytes();
    let cases = vec![
        Case {
            name: "malformed JSON",
            key: Some(KEY_ALL),
            body: b"{\"from\": \"s0\",".to_vec(),
            status: 400,
            code: Some("malformed_json"),
            field: None,
        },
        Case {
            name: "JSON that is not an object",
            key: Some(KEY_ALL),
            body: b"[1, 2]".to_vec(),
            status: 400,
            code: Some("malformed_json"),
            field: None,
        },
        case(
            "unknown type",
            json!({"from": "s0", "to": "+16505551234", "type": "hologram", "hologram": {}}),
            422,
            "type",
        ),
        case(
            "text over 4,096 characters",
            text(&"x".repeat(4_097)),
            422,
            "text.body",
        ),
        case("empty text", text(""), 422, "text.body"),
        case(
            "four reply buttons",
            buttons(4),
            422,
            "interactive.action.buttons",
        ),
        case(
            "http media link",
            json!({"from": "s0", "to": "+16505551234", "type": "image", "image": {"link": "http://example.com/a.jpg"}}),
            422,
            "image.link",
        ),
        case(
            "bad number",
            json!({"from": "s0", "to": "+1 650 CALL NOW", "type": "text", "text": {"body": "hi"}}),
            422,
            "to",
        ),
        case(
            "too short a number",
            json!({"from": "s0", "to": "+1234", "type": "text", "text": {"body": "hi"}}),
            422,
            "to",
        ),
        case(
            "no recipient",
            json!({"from": "s0", "type": "text", "text": {"body": "hi"}}),
            422,
            "to",
        ),
        case(
            "unknown sender",
            json!({"from": "nobody", "to": "+16505551234", "type": "text", "text": {"body": "hi"}}),
            422,
            "from",
        ),
        case(
            "template without language",
            json!({"from": "s0", "to": "+16505551234", "type": "template", "template": {"name": "hello_world"}}),
            422,
            "template.language",
        ),
        case(
            "bad fallback template",
            json!({"from": "s0", "to": "+16505551234", "type": "text", "text": {"body": "hi"}, "fallback_template": {"language": {"code": "en_US"}}}),
            422,
            "fallback_template.name",
        ),
        case(
            "unknown field",
            json!({"from": "s0", "to": "+16505551234", "type": "text", "text": {"body": "hi"}, "sendd_after": "x"}),
            422,
            "sendd_after",
        ),
        case(
            "metadata not an object",
            json!({"from": "s0", "to": "+16505551234", "type": "text", "text": {"body": "hi"}, "metadata": [1]}),
            422,
            "metadata",
        ),
        Case {
            name: "sender the client may not use",
            key: Some(KEY_ONE),
            body:
                json!({"from": "s1", "to": "+16505551234", "type": "text", "text": {"body": "hi"}})
                    .to_string()
                    .into_bytes(),
            status: 403,
            code: Some("forbidden"),
            field: Some("from"),
        },
        Case {
            name: "missing key",
            key: None,
            body: good.clone(),
            status: 401,
            code: Some("unauthorized"),
            field: None,
        },
        Case {
            name: "wrong key",
            key: Some("not-a-key"),
            body: good.clone(),
            status: 401,
            code: Some("unauthorized"),
            field: None,
        },
        Case {
            name: "oversized body",
            key: Some(KEY_ALL),
            body: text(&"x".repeat(20_000)).to_string().into_bytes(),
            status: 413,
            code: Some("payload_too_large"),
            field: None,
        },
    ];
    for case in cases {
        let (status, body) = gateway.post("/send", case.key, case.body).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        let error = &body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            case.name
        );
        if let Some(code) = case.code {
            assert_eq!(error["code"], code, "{}: {body}", case.name);
        }
        match case.field {
            Some(field) => assert_eq!(error["field"], field, "{}: {body}", case.name),
            None => assert!(error.get("field").is_none(), "{}: {body}", case.name),
        }
        assert_eq!(
            gateway.queue_len(0).await,
            0,
            "{} queued something",
            case.name
        );
        assert_eq!(
            gateway.queue_len(1).await,
            0,
            "{} queued something",
            case.name
        );
    }
    // The same body, well formed, is accepted: the cases fail for their flaw alone.
    let (status, body) = gateway.post("/send", Some(KEY_ALL), good).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(gateway.queue_len(0).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_foreign_message_ids_are_not_found() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let (status, body) = gateway
        .send(&json!({"from": "s1", "to": "+16505551234", "type": "text", "text": {"body": "hi"}}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id");

    for unknown in [
        "nope",
        "1000000000-01JD3F6Q8Z1XK9V7M2T4R5N6PA",
        "..%2F..%2Fetc",
    ] {
        let (status, _) = gateway.message(unknown).await;
        assert_eq!(status, 404, "{unknown}");
    }
    // Client "one" may not use s1, so it may not read s1's messages either.
    let response = gateway
        .http
        .get(format!("{}/messages/{id}", gateway.api_url))
        .bearer_auth(KEY_ONE)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 404);
    let (status, _) = gateway.message(id).await;
    assert_eq!(status, 200);
}
