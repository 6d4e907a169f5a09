//! Templates known before queueing: the workers keep each WABA's template
//! registry from Meta's listing (the sandbox's, with components), `/send`
//! refuses with 422 what Meta would refuse and stores nothing, a template's
//! category travels with the message, and a fallback template that Meta
//! paused (in its answer or by webhook) is not sent again: messages to
//! closed windows fail `no_usable_fallback` without a call.

use std::collections::HashMap;
use std::time::Duration;

use gateway_domain::MessageId;
use gateway_sandbox::{TemplateConfig, TemplateStatus};
use gateway_tests::{GatewayOptions, KEY_ALL, TestGateway, phone_number_id, wait_until_every};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The sandbox's templates beside `hello_world` (UTILITY, no parameters)
/// and `order_update` (UTILITY, two body parameters).
fn templates() -> Vec<TemplateConfig> {
    vec![
        TemplateConfig::new("spring_sale", "en_US", 1).with_category("MARKETING"),
        TemplateConfig::new("spring_sale", "pt_BR", 1).with_category("MARKETING"),
        TemplateConfig::new("promo_paused", "en_US", 0)
            .with_category("MARKETING")
            .with_status(TemplateStatus::Paused),
        TemplateConfig::new("shipped", "en_US", 1)
            .with_text_header(1)
            .with_button("URL", 1),
        TemplateConfig::new("login_code", "en_US", 1)
            .with_category("AUTHENTICATION")
            .with_button("OTP", 1),
    ]
}

fn text(value: &str) -> Value {
    json!({"type": "text", "text": value})
}

fn template(name: &str, language: &str, components: Value) -> Value {
    json!({"name": name, "language": {"code": language}, "components": components})
}

fn template_to(to: &str, template: Value) -> Value {
    json!({"from": "s0", "to": to, "type": "template", "template": template})
}

fn text_to(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "text", "text": {"body": "Your order shipped"}})
}

fn body(parameters: usize) -> Value {
    let parameters: Vec<Value> = (0..parameters).map(|i| text(&format!("p{i}"))).collect();
    json!({"type": "body", "parameters": parameters})
}

/// The fields of a queued message's stream entry, while it is queued.
async fn entry_fields(gateway: &TestGateway, id: &str) -> Option<HashMap<String, String>> {
    let id = MessageId::parse(id).expect("message id");
    let entry_id = id.entry_id().expect("a queued message");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(gateway_queue::keys::stream(
            &phone_number_id(0),
            gateway_domain::Lane::Transactional,
        ))
        .arg(entry_id)
        .arg(entry_id)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("XRANGE");
    let entry = reply.ids.into_iter().next()?;
    Some(
        entry
            .map
            .into_iter()
            .filter_map(|(k, v)| Some((k, redis::from_redis_value::<String>(v).ok()?)))
            .collect(),
    )
}

/// A field of a message as stored: in its stream entry while it is queued,
/// else in its record. The entry is read first: a worker writes the record
/// and deletes the entry in one step, so a message gone from the stream has
/// its record, while a record read first may be written only after the
/// entry is deleted.
async fn stored_field(gateway: &TestGateway, id: &str, field: &str) -> Option<String> {
    if let Some(mut fields) = entry_fields(gateway, id).await {
        return fields.remove(field);
    }
    let record: Option<String> = redis::cmd("HGET")
        .arg(gateway_queue::keys::record(&phone_number_id(0), id))
        .arg(field)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("HGET");
    record.filter(|v| !v.is_empty())
}

async fn refused(gateway: &TestGateway, message: Value) -> (String, String) {
    let (status, answer) = gateway.send(&message).await;
    assert_eq!(status, 422, "{message} → {answer}");
    let error = &answer["error"];
    (
        error["field"].as_str().unwrap_or("").to_owned(),
        error["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn accepted(gateway: &TestGateway, message: &Value) -> String {
    let (status, answer) = gateway.send(message).await;
    assert_eq!(status, 202, "{message} → {answer}");
    answer["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_templates_meta_would_refuse_and_stores_nothing() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        templates: templates(),
        ..Default::default()
    })
    .await;
    // No worker has read Meta yet: nothing is refused, as before.
    accepted(
        &gateway,
        &template_to(
            "+16505550001",
            template("no_such_template", "en_US", json!([])),
        ),
    )
    .await;
    // A worker syncs the registry, then is gone, so that whatever is
    // queued from now on stays in the stream.
    let mut worker = gateway.spawn_worker(BINARY);
    gateway.wait_for_template_registry().await;
    worker.kill();
    let queued = gateway.queue_len(0).await;

    let cases = [
        (
            "unknown",
            template_to(
                "+16505550002",
                template("no_such_template", "en_US", json!([])),
            ),
            "template.name",
            "template_unknown",
        ),
        (
            "paused",
            template_to("+16505550002", template("promo_paused", "en_US", json!([]))),
            "template.name",
            "template_not_approved",
        ),
        (
            "a language it does not have",
            template_to(
                "+16505550002",
                template("spring_sale", "de", json!([body(1)])),
            ),
            "template.language.code",
            "template_language",
        ),
        (
            "too many body parameters",
            template_to(
                "+16505550002",
                template("spring_sale", "en_US", json!([body(2)])),
            ),
            "template.components[0].parameters",
            "template_parameters",
        ),
        (
            "no header parameter",
            template_to(
                "+16505550002",
                template(
                    "shipped",
                    "en_US",
                    json!([body(1), {"type": "button", "sub_type": "url", "index": "0", "parameters": [text("A1")]}]),
                ),
            ),
            "template.components",
            "template_parameters",
        ),
        (
            "no parameter for the URL button",
            template_to(
                "+16505550002",
                template(
                    "shipped",
                    "en_US",
                    json!([{"type": "header", "parameters": [text("A1")]}, body(1)]),
                ),
            ),
            "template.components",
            "template_parameters",
        ),
        (
            "an unknown fallback template",
            {
                let mut message = text_to("+16505550002");
                message["fallback_template"] = template("no_such_template", "en_US", json!([]));
                message
            },
            "fallback_template.name",
            "template_unknown",
        ),
        (
            "a fallback template with the wrong parameters",
            {
                let mut message = text_to("+16505550002");
                message["fallback_template"] = template("order_update", "en_US", json!([body(1)]));
                message
            },
            "fallback_template.components[0].parameters",
            "template_parameters",
        ),
    ];
    for (what, message, field, code) in cases {
        assert_eq!(
            refused(&gateway, message).await,
            (field.to_owned(), code.to_owned()),
            "{what}"
        );
    }
    assert_eq!(gateway.queue_len(0).await, queued, "nothing was stored");
    assert!(
        gateway
            .metrics
            .template_refusals
            .with_label_values(&["s0", "template_unknown"])
            .get()
            >= 2
    );

    // A batch: the refused item is answered in place, the others stored.
    let batch = json!({"messages": [
        template_to("+16505550003", template("hello_world", "en_US", json!([]))),
        template_to("+16505550004", template("promo_paused", "en_US", json!([]))),
    ]});
    let (status, answer) = gateway
        .post("/send/batch", Some(KEY_ALL), batch.to_string().into_bytes())
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "queued", "{answer}");
    assert_eq!(
        answer["results"][1]["error"]["field"], "messages[1].template.name",
        "{answer}"
    );
    assert_eq!(
        answer["results"][1]["error"]["code"],
        "template_not_approved"
    );
    assert_eq!(gateway.queue_len(0).await, queued + 1);

    // What the registry knows is accepted, and each template's category
    // travels with the message (the fallback's too).
    let header = json!({"type": "header", "parameters": [text("A1")]});
    let url = json!({"type": "button", "sub_type": "url", "index": 0, "parameters": [text("x")]});
    let code =
        json!({"type": "button", "sub_type": "url", "index": "0", "parameters": [text("123456")]});
    let mut sale = template_to(
        "+16505550005",
        template("spring_sale", "pt_BR", json!([body(1)])),
    );
    sale["fallback_template"] = template("hello_world", "en_US", json!([]));
    let expected = [
        (sale, Some("MARKETING"), Some("UTILITY")),
        (
            template_to(
                "+16505550006",
                template("shipped", "en_US", json!([header, body(1), url])),
            ),
            Some("UTILITY"),
            None,
        ),
        (
            template_to(
                "+16505550007",
                template("login_code", "en_US", json!([body(1), code])),
            ),
            Some("AUTHENTICATION"),
            None,
        ),
        (text_to("+16505550008"), None, None),
    ];
    for (message, category, fallback_category) in expected {
        let id = accepted(&gateway, &message).await;
        let fields = entry_fields(&gateway, &id).await.expect("the entry");
        assert_eq!(fields.get("tc").map(String::as_str), category, "{message}");
        assert_eq!(
            fields.get("ftc").map(String::as_str),
            fallback_category,
            "{message}"
        );
    }
    assert_eq!(gateway.queue_len(0).await, queued + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_template_meta_answers_paused_is_not_sent_again() {
    // No webhooks: the gateway learns of the pause only from Meta's answer.
    let gateway = TestGateway::start(GatewayOptions::default()).await;
    gateway.wait_for_template_registry().await;
    gateway
        .sandbox
        .set_template_status("hello_world", "en_US", TemplateStatus::Paused)
        .expect("registered template");

    // The first text to a closed window goes as the sender's fallback,
    // and Meta answers 132015.
    let first = gateway.send_all(&[text_to("+16505550001")]).await;
    let record = gateway
        .wait_for_status(&first[0], "failed", Duration::from_secs(20))
        .await;
    assert_eq!(record["error"]["code"], 132015, "{record}");
    // Marked at once: in the registry, and in the alert's metric.
    let entry = gateway
        .template_entry("hello_world", "en_US")
        .await
        .expect("in the registry");
    assert_eq!(entry["status"], "PAUSED", "{entry}");
    assert_eq!(
        gateway
            .metrics
            .fallback_template_unusable
            .with_label_values(&["s0", "hello_world", "en_US"])
            .get(),
        1
    );

    // A backlog of texts to closed windows: none reaches Meta.
    let texts: Vec<Value> = (2..8)
        .map(|i| text_to(&format!("+1650555000{i}")))
        .collect();
    let ids = gateway.send_all(&texts).await;
    for id in &ids {
        let record = gateway
            .wait_for_status(id, "failed", Duration::from_secs(20))
            .await;
        let history = record["history"].as_array().expect("history");
        assert!(
            history.iter().any(|e| e["reason"] == "no_usable_fallback"),
            "{record}"
        );
        assert_eq!(record["error"]["code"], 132015, "{record}");
    }
    let stats = gateway.sandbox.stats();
    assert_eq!(
        stats.rejections.get(&132015).copied(),
        Some(1),
        "one call only: {stats:?}"
    );
    assert!(gateway.sandbox.accepted().is_empty(), "nothing was sent");

    // A message with a usable fallback of its own still goes.
    let mut own = text_to("+16505550009");
    own["fallback_template"] = template("order_update", "en_US", json!([body(2)]));
    let ids = gateway.send_all(&[own]).await;
    let record = gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(20))
        .await;
    assert_eq!(record["fallback_used"], true, "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_category_webhooks_update_the_registry() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        templates: templates(),
        ..Default::default()
    })
    .await;
    gateway.wait_for_template_registry().await;
    let status_of = |entry: Option<Value>| entry.map(|e| e["status"].clone());

    // Meta pauses the sender's fallback and says so by webhook.
    gateway
        .sandbox
        .set_template_status("hello_world", "en_US", TemplateStatus::Paused)
        .expect("registered template");
    wait_until_every(
        "the registry to say PAUSED",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            (status_of(gateway.template_entry("hello_world", "en_US").await)
                == Some(json!("PAUSED")))
            .then_some(())
        },
    )
    .await;
    let ids = gateway.send_all(&[text_to("+16505550001")]).await;
    let record = gateway
        .wait_for_status(&ids[0], "failed", Duration::from_secs(20))
        .await;
    let history = record["history"].as_array().expect("history");
    assert!(
        history.iter().any(|e| e["reason"] == "no_usable_fallback"),
        "{record}"
    );
    assert!(gateway.sandbox.accepted().is_empty(), "nothing was sent");
    assert_eq!(gateway.sandbox.stats().rejections.get(&132015), None);

    // Approved again: the fallback goes again.
    gateway
        .sandbox
        .set_template_status("hello_world", "en_US", TemplateStatus::Approved)
        .expect("registered template");
    wait_until_every(
        "the registry to say APPROVED",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            (status_of(gateway.template_entry("hello_world", "en_US").await)
                == Some(json!("APPROVED")))
            .then_some(())
        },
    )
    .await;
    let ids = gateway.send_all(&[text_to("+16505550002")]).await;
    let record = gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(20))
        .await;
    assert_eq!(record["fallback_used"], true, "{record}");

    // Meta recategorises a template: messages accepted from then on carry
    // the new category (the api reads the registry again within seconds).
    gateway
        .sandbox
        .set_template_category("order_update", "en_US", "MARKETING")
        .expect("registered template");
    let mut n = 10;
    wait_until_every(
        "order_update to be queued as MARKETING",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            n += 1;
            let to = format!("+165055500{n}");
            let gateway = &gateway;
            async move {
                let message = template_to(&to, template("order_update", "en_US", json!([body(2)])));
                let id = accepted(gateway, &message).await;
                (stored_field(gateway, &id, "tc").await.as_deref() == Some("MARKETING"))
                    .then_some(())
            }
        },
    )
    .await;
    let entry = gateway
        .template_entry("order_update", "en_US")
        .await
        .expect("in the registry");
    assert_eq!(entry["category"], "MARKETING", "{entry}");
}
