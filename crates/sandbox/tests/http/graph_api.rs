//! The Graph send route: Meta's success shape and each synchronous error.

use axum::http::StatusCode;
use gateway_sandbox::{Rules, TemplateConfig, TemplateStatus};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn an_accepted_send_gets_metas_success_shape_and_a_unique_wamid() {
    let sandbox = TestSandbox::start(config()).await;
    sandbox.inbound(USER_DIGITS, "hi").await;

    let mut first = text(USER, "Your order shipped");
    first["biz_opaque_callback_data"] = json!("order-42");
    let (status, answer) = sandbox.send(&first).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let wamid = answer["messages"][0]["id"]
        .as_str()
        .expect("a wamid")
        .to_owned();
    assert!(wamid.starts_with("wamid.") && wamid.len() > 20, "{wamid}");
    assert_eq!(
        answer,
        json!({"messaging_product": "whatsapp",
               "contacts": [{"input": USER, "wa_id": USER_DIGITS}],
               "messages": [{"id": wamid}]})
    );

    let (_, second) = sandbox.send(&text("+16505551234", "again")).await;
    assert_ne!(
        second["messages"][0]["id"],
        json!(wamid),
        "wamids are unique"
    );

    let accepted = sandbox.sandbox.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].wamid, wamid);
    assert_eq!(accepted[0].recipient, USER_DIGITS);
    assert_eq!(accepted[0].phone_number_id, NUMBER);
    assert_eq!(accepted[0].message_type, "text");
    assert_eq!(
        accepted[0].biz_opaque_callback_data.as_deref(),
        Some("order-42")
    );
    assert_eq!(accepted[0].body, first);
}

#[tokio::test]
async fn unknown_or_mismatched_tokens_get_401_code_190() {
    let mut config = config();
    config.numbers.push(gateway_sandbox::NumberConfig::new(
        "200",
        "300",
        "other-token",
    ));
    let sandbox = TestSandbox::start(config).await;
    let body = template(USER, "hello_world", &[]);
    for token in [None, Some("wrong"), Some("other-token")] {
        let (status, answer) = sandbox.send_as(NUMBER, token, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(error_code(&answer), 190);
        assert_eq!(answer["error"]["type"], "OAuthException");
    }
}

#[tokio::test]
async fn an_unknown_number_gets_400_code_100() {
    let sandbox = TestSandbox::start(config()).await;
    let (status, answer) = sandbox
        .send_as("999999", Some(TOKEN), &template(USER, "hello_world", &[]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&answer), 100);
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("999999"))
    );
}

#[tokio::test]
async fn invalid_requests_get_metas_codes_before_any_limit_and_use_no_quota() {
    let mut config = config();
    config.numbers[0].rate_per_second = 1;
    let sandbox = TestSandbox::start(config).await;

    let mut wrong_product = text(USER, "x");
    wrong_product["messaging_product"] = json!("sms");
    let buttons = json!({"messaging_product": "whatsapp", "to": USER, "type": "interactive", "interactive": {
        "type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "1", "title": "a"}}, {"type": "reply", "reply": {"id": "2", "title": "b"}},
            {"type": "reply", "reply": {"id": "3", "title": "c"}}, {"type": "reply", "reply": {"id": "4", "title": "d"}}]}}});
    let image = json!({"messaging_product": "whatsapp", "to": USER, "type": "image", "image": {"caption": "no media"}});
    let cases: [(Value, i64); 4] = [
        (wrong_product, 100),
        (text(USER, &"a".repeat(4097)), 100),
        (buttons, 131_009),
        (image, 131_008),
    ];
    let check = |(status, answer): (StatusCode, Value), code: i64| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(error_code(&answer), code, "{answer}");
        assert_eq!(
            answer["error"]["error_data"]["messaging_product"],
            "whatsapp"
        );
    };
    for (body, code) in &cases {
        check(sandbox.send(body).await, *code);
    }
    // The number's only token is still there...
    let (status, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // ...and with the bucket empty, validation still answers first.
    for (body, code) in &cases {
        check(sandbox.send(body).await, *code);
    }
    assert_eq!(sandbox.sandbox.stats().rejections.values().sum::<u64>(), 8);
}

#[tokio::test]
async fn an_empty_bucket_gets_130429_as_400_or_429_by_switch() {
    let mut config = config();
    config.numbers[0].rate_per_second = 5;
    let sandbox = TestSandbox::start(config).await;
    for i in 0..5 {
        let (status, answer) = sandbox
            .send(&template(&format!("+1650555000{i}"), "hello_world", &[]))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, answer) = sandbox
        .send(&template("+16505550009", "hello_world", &[]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&answer), 130_429);
    assert_eq!(answer["error"]["message"], "(#130429) Rate limit hit");

    sandbox.sandbox.set_rules(Rules {
        throughput_http_429: true,
        ..Rules::default()
    });
    let (status, answer) = sandbox
        .send(&template("+16505550009", "hello_world", &[]))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&answer), 130_429);
}

#[tokio::test]
async fn the_46th_message_to_one_user_within_a_burst_gets_131056_and_others_are_unaffected() {
    let sandbox = TestSandbox::start(config()).await;
    let hello = template(USER, "hello_world", &[]);
    for i in 0..45 {
        let (status, answer) = sandbox.send(&hello).await;
        assert_eq!(status, StatusCode::OK, "message {i}: {answer}");
    }
    let (status, answer) = sandbox.send(&hello).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&answer), 131_056);
    let (status, _) = sandbox
        .send(&template("+16505550000", "hello_world", &[]))
        .await;
    assert_eq!(status, StatusCode::OK, "another recipient is not limited");
}

#[tokio::test]
async fn free_form_outside_the_window_gets_131047_until_the_user_writes() {
    let sandbox = TestSandbox::start(config()).await;
    let (status, answer) = sandbox.send(&text(USER, "hello?")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&answer), 131_047);
    let (status, _) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK, "templates ignore the window");

    sandbox.inbound("+1 650 555 1234", "I need help").await;
    let (status, answer) = sandbox.send(&text(USER, "How can we help?")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let bsuid = "US.13491208655302741918";
    let to_bsuid = json!({"messaging_product": "whatsapp", "recipient": bsuid, "type": "text", "text": {"body": "x"}});
    let (status, _) = sandbox.send(&to_bsuid).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the window is per user id");
    sandbox.inbound(bsuid, "hi").await;
    let (status, answer) = sandbox.send(&to_bsuid).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["contacts"][0]["user_id"], bsuid);
    assert_eq!(
        sandbox
            .sandbox
            .accepted()
            .last()
            .map(|m| m.recipient.clone()),
        Some(bsuid.to_owned())
    );
}

#[tokio::test]
async fn template_registry_errors() {
    let mut config = config();
    for (name, status) in [
        ("spring_sale", TemplateStatus::Paused),
        ("old_terms", TemplateStatus::Disabled),
    ] {
        let mut template = TemplateConfig::new(name, "en_US", 0);
        template.status = status;
        config.templates.push(template);
    }
    let sandbox = TestSandbox::start(config).await;
    let cases = [
        (
            template(USER, "no_such_template", &[]),
            StatusCode::NOT_FOUND,
            132_001,
        ),
        (
            template(USER, "order_update", &["only one"]),
            StatusCode::BAD_REQUEST,
            132_000,
        ),
        (
            template(USER, "spring_sale", &[]),
            StatusCode::BAD_REQUEST,
            132_015,
        ),
        (
            template(USER, "old_terms", &[]),
            StatusCode::BAD_REQUEST,
            132_016,
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = sandbox.send(&body).await;
        assert_eq!((got, error_code(&answer)), (status, code), "{answer}");
    }
    let mut german = template(USER, "hello_world", &[]);
    german["template"]["language"]["code"] = json!("de");
    let (status, answer) = sandbox.send(&german).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::NOT_FOUND, 132_001)
    );

    let (status, answer) = sandbox
        .send(&template(USER, "order_update", &["A-1", "tomorrow"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["messages"][0]["message_status"], "accepted");
}

#[tokio::test]
async fn header_and_button_parameters_must_match_the_template() {
    let mut config = config();
    config.templates.push(
        TemplateConfig::new("shipped", "en_US", 1)
            .with_text_header(1)
            .with_button("URL", 1)
            .with_button("QUICK_REPLY", 0),
    );
    let sandbox = TestSandbox::start(config).await;
    let text = |t: &str| json!({"type": "text", "text": t});
    let send = |components: Value| {
        json!({"messaging_product": "whatsapp", "to": USER, "type": "template", "template": {
            "name": "shipped", "language": {"code": "en_US"}, "components": components}})
    };
    let header = json!({"type": "header", "parameters": [text("A-1")]});
    let body = json!({"type": "body", "parameters": [text("Ana")]});
    let url =
        json!({"type": "button", "sub_type": "url", "index": "0", "parameters": [text("t/1")]});
    let (status, answer) = sandbox.send(&send(json!([header, body, url]))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for (what, components) in [
        ("no header", json!([body, url])),
        ("no url parameter", json!([header, body])),
        (
            "a button it does not have",
            json!([header, body, url, {"type": "button", "sub_type": "url", "index": 4, "parameters": [text("x")]}]),
        ),
    ] {
        let (status, answer) = sandbox.send(&send(components)).await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::BAD_REQUEST, 132_000),
            "{what}: {answer}"
        );
    }
}

#[tokio::test]
async fn message_templates_lists_components_a_page_at_a_time() {
    let mut config = config();
    for i in 0..30 {
        config
            .templates
            .push(TemplateConfig::new(format!("bulk_{i:02}"), "en_US", i % 3));
    }
    config.templates.push(
        TemplateConfig::new("shipped", "en_US", 2)
            .with_category("MARKETING")
            .with_text_header(1)
            .with_button("URL", 1)
            .with_button("QUICK_REPLY", 0),
    );
    let receiver = Receiver::start(0).await;
    config.webhook = Some(receiver.target());
    let sandbox = TestSandbox::start(config).await;
    let list = |query: String| {
        let request = sandbox
            .client
            .get(format!(
                "{}/v25.0/{WABA}/message_templates{query}",
                sandbox.base
            ))
            .bearer_auth(TOKEN);
        async move {
            let response = request.send().await.expect("an answer");
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.expect("JSON")
        }
    };
    // Meta's default page is 25; paging.next leads on until the last page.
    let mut names = Vec::new();
    let mut query = String::new();
    let mut pages = 0;
    loop {
        let page = list(query.clone()).await;
        pages += 1;
        for template in page["data"].as_array().expect("data") {
            names.push(template["name"].as_str().expect("name").to_owned());
        }
        if page["paging"]["next"].is_null() {
            break;
        }
        let after = page["paging"]["cursors"]["after"].as_str().expect("cursor");
        query = format!("?after={after}");
    }
    assert_eq!(pages, 2);
    assert_eq!(names.len(), 33, "every template once: {names:?}");

    let page = list("?name=shipped&limit=5".into()).await;
    let shipped = &page["data"][0];
    assert_eq!(shipped["category"], "MARKETING");
    assert_eq!(shipped["status"], "APPROVED");
    assert_eq!(
        shipped["components"],
        json!([
            {"type": "HEADER", "format": "TEXT", "text": "Sandbox header {{1}}"},
            {"type": "BODY", "text": "Sandbox template {{1}} {{2}}"},
            {"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Open", "url": "https://example.com/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Reply"},
            ]},
        ])
    );
    assert!(page["paging"]["next"].is_null());

    // A category changed by an operator is listed and reported by webhook.
    let (status, answer) = sandbox
        .admin(
            reqwest::Method::POST,
            "template-category",
            Some(json!({"name": "shipped", "language": "en_US", "category": "utility"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let page = list("?name=shipped".into()).await;
    assert_eq!(page["data"][0]["category"], "UTILITY");
    let change = wait_for("the template_category_update webhook", || {
        receiver.received().into_iter().find_map(|r| {
            let body = r.json();
            let change = body["entry"][0]["changes"][0].clone();
            (change["field"] == "template_category_update").then_some(change)
        })
    })
    .await;
    assert_eq!(change["value"]["message_template_name"], "shipped");
    assert_eq!(change["value"]["previous_category"], "MARKETING");
    assert_eq!(change["value"]["new_category"], "UTILITY");
    let (status, _) = sandbox
        .admin(
            reqwest::Method::POST,
            "template-category",
            Some(json!({"name": "nope", "language": "en_US", "category": "UTILITY"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_every_rule_off_any_well_formed_send_to_a_known_number_passes() {
    let mut config = config();
    config.rules = Rules::off();
    config.numbers[0].rate_per_second = 1;
    let sandbox = TestSandbox::start(config).await;
    for i in 0..100 {
        let (status, answer) = sandbox
            .send_as(NUMBER, None, &text(USER, &format!("message {i}")))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, _) = sandbox
        .send(&template(USER, "not_registered", &["x"]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = sandbox.send_as("unknown", None, &text(USER, "x")).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 100)
    );
}
