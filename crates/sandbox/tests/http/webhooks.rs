//! Status and inbound webhooks: Meta's envelope, signatures, order, retries,
//! asynchronous failures and the status quirks.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use gateway_sandbox::{FailureMode, SandboxConfig, StatusConfig, TemplateConfig, UserConfig};
use serde_json::{Value, json};

use crate::helpers::*;

async fn start_with(
    receiver: &Receiver,
    configure: impl FnOnce(&mut SandboxConfig),
) -> TestSandbox {
    let mut config = config();
    config.webhook = Some(receiver.target());
    configure(&mut config);
    TestSandbox::start(config).await
}

fn kinds(statuses: &[Value]) -> Vec<&str> {
    statuses
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect()
}

async fn send_ok(sandbox: &TestSandbox, body: &Value) -> String {
    let (status, answer) = sandbox.send(body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["messages"][0]["id"]
        .as_str()
        .expect("a wamid")
        .to_owned()
}

#[tokio::test]
async fn statuses_arrive_signed_in_metas_envelope_in_order_sent_delivered_read() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |_| {}).await;
    sandbox.inbound(USER_DIGITS, "hi").await;
    let mut body = text(USER, "Your order shipped");
    body["biz_opaque_callback_data"] = json!("order-42");
    let wamid = send_ok(&sandbox, &body).await;

    let statuses = receiver
        .wait_for_statuses(&wamid, &["sent", "delivered", "read"])
        .await;
    assert_eq!(kinds(&statuses), ["sent", "delivered", "read"]);
    for status in &statuses {
        assert_eq!(status["recipient_id"], USER_DIGITS);
        assert_eq!(status["biz_opaque_callback_data"], "order-42");
        let timestamp = status["timestamp"].as_str().expect("a string timestamp");
        assert!(
            timestamp.len() >= 10 && timestamp.bytes().all(|b| b.is_ascii_digit()),
            "{timestamp}"
        );
        assert_eq!(
            status["pricing"],
            json!({"billable": false, "pricing_model": "PMP", "type": "free_customer_service", "category": "service"})
        );
    }

    let received = receiver.received();
    assert!(!received.is_empty());
    for post in &received {
        assert!(
            post.signature_is_valid(APP_SECRET),
            "bad signature {:?}",
            post.signature
        );
        assert!(!post.signature_is_valid("another secret"));
        assert_eq!(post.content_type.as_deref(), Some("application/json"));
        let envelope = post.json();
        assert_eq!(envelope["object"], "whatsapp_business_account");
        assert_eq!(envelope["entry"][0]["id"], WABA);
        let change = &envelope["entry"][0]["changes"][0];
        assert_eq!(change["field"], "messages");
        assert_eq!(change["value"]["messaging_product"], "whatsapp");
        assert_eq!(
            change["value"]["metadata"],
            json!({"display_phone_number": "15550783881", "phone_number_id": NUMBER})
        );
    }
}

#[tokio::test]
async fn an_inbound_message_is_posted_as_a_messages_webhook() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |_| {}).await;
    let wamid = sandbox.inbound(USER, "Olá, I need help").await;
    let message = wait_for("the inbound webhook", || {
        receiver.messages().into_iter().next()
    })
    .await;
    assert_eq!(message["id"], json!(wamid));
    assert_eq!(message["from"], USER_DIGITS);
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"]["body"], "Olá, I need help");
    let post = receiver.received().into_iter().next().expect("one POST");
    assert!(post.signature_is_valid(APP_SECRET));
    assert!(post.body.is_ascii(), "non-ASCII is escaped as Meta does");
    assert_eq!(
        post.json()["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"],
        USER_DIGITS
    );
}

#[tokio::test]
async fn a_post_answered_with_500_is_retried_with_the_same_signed_body() {
    let receiver = Receiver::start(1).await;
    let sandbox = start_with(&receiver, |config| {
        config.statuses = StatusConfig {
            read_rate: 0.0,
            ..StatusConfig::default()
        };
    })
    .await;
    let wamid = send_ok(&sandbox, &template(USER, "hello_world", &[])).await;
    receiver
        .wait_for_statuses(&wamid, &["sent", "delivered"])
        .await;

    let received = receiver.received();
    let failed = received
        .iter()
        .find(|r| r.answered == StatusCode::INTERNAL_SERVER_ERROR)
        .expect("a failed POST");
    let retried = received
        .iter()
        .find(|r| r.answered == StatusCode::OK && r.body == failed.body);
    assert!(
        retried.is_some_and(|r| r.signature == failed.signature),
        "the same body was posted again"
    );
    let stats = wait_for("both deliveries counted", || {
        Some(sandbox.sandbox.stats()).filter(|stats| stats.webhooks_delivered == 2)
    })
    .await;
    assert_eq!(stats.webhook_failed_attempts, 1);
}

async fn failed_status(receiver: &Receiver, wamid: &str) -> Value {
    let statuses = receiver.wait_for_statuses(wamid, &["failed"]).await;
    assert_eq!(
        kinds(&statuses),
        ["failed"],
        "a failed send gets no other status"
    );
    statuses[0].clone()
}

#[tokio::test]
async fn a_user_not_on_whatsapp_gets_200_then_a_failed_status_131026() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        config.users.push(UserConfig {
            id: USER.into(),
            not_on_whatsapp: true,
            ..UserConfig::default()
        });
    })
    .await;
    let mut body = template(USER, "hello_world", &[]);
    body["biz_opaque_callback_data"] = json!("cb");
    let wamid = send_ok(&sandbox, &body).await;
    let status = failed_status(&receiver, &wamid).await;
    assert_eq!(status["recipient_id"], USER_DIGITS);
    assert_eq!(status["biz_opaque_callback_data"], "cb");
    let error = &status["errors"][0];
    assert_eq!(error["code"], 131026);
    assert_eq!(error["title"], "Message undeliverable");
    assert!(error["message"].is_string());
    assert!(error["error_data"]["details"].is_string());
    assert_eq!(
        sandbox.sandbox.stats().failed_statuses.get(&131_026),
        Some(&1)
    );
}

#[tokio::test]
async fn a_closed_window_may_fail_asynchronously_with_131047() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        config.rules.window_failure = FailureMode::Async
    })
    .await;
    let wamid = send_ok(&sandbox, &text(USER, "outside the window")).await;
    assert_eq!(
        failed_status(&receiver, &wamid).await["errors"][0]["code"],
        131047
    );
}

#[tokio::test]
async fn marketing_flags_fail_marketing_templates_only() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        let mut promo = TemplateConfig::new("promo", "en_US", 0);
        promo.category = "MARKETING".into();
        config.templates.push(promo);
        config.users.push(UserConfig {
            id: "16505550001".into(),
            marketing_opt_out: true,
            ..UserConfig::default()
        });
        config.users.push(UserConfig {
            id: "16505550002".into(),
            marketing_capped: true,
            ..UserConfig::default()
        });
    })
    .await;
    let opted_out = send_ok(&sandbox, &template("+16505550001", "promo", &[])).await;
    let capped = send_ok(&sandbox, &template("+16505550002", "promo", &[])).await;
    let utility = send_ok(&sandbox, &template("+16505550001", "hello_world", &[])).await;
    assert_eq!(
        failed_status(&receiver, &opted_out).await["errors"][0]["code"],
        131050
    );
    assert_eq!(
        failed_status(&receiver, &capped).await["errors"][0]["code"],
        131049
    );
    let statuses = receiver.wait_for_statuses(&utility, &["sent"]).await;
    assert_eq!(statuses[0]["pricing"]["category"], "utility");
}

#[tokio::test]
async fn statuses_can_be_reordered_duplicated_dropped_and_batched() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        config.statuses = StatusConfig {
            reorder_rate: 1.0,
            duplicate_rate: 1.0,
            ..StatusConfig::default()
        };
    })
    .await;
    let wamid = send_ok(&sandbox, &template(USER, "hello_world", &[])).await;
    let statuses = wait_for("six statuses", || {
        let all: Vec<Value> = receiver
            .statuses()
            .into_iter()
            .filter(|s| s["id"] == json!(wamid))
            .collect();
        (all.len() >= 6).then_some(all)
    })
    .await;
    assert_eq!(
        kinds(&statuses),
        ["read", "read", "delivered", "delivered", "sent", "sent"]
    );

    sandbox.sandbox.set_statuses(StatusConfig {
        sent_ms: 50,
        delivered_ms: 50,
        read_ms: 50,
        drop_delivered_rate: 1.0,
        batch: 10,
        ..StatusConfig::default()
    });
    let wamid = send_ok(&sandbox, &template(USER, "hello_world", &[])).await;
    receiver.wait_for_statuses(&wamid, &["sent", "read"]).await;
    let batched = receiver
        .received()
        .iter()
        .map(|post| post.json())
        .find(|body| body["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] == json!(wamid))
        .expect("the POST with the new statuses");
    assert_eq!(
        kinds(
            batched["entry"][0]["changes"][0]["value"]["statuses"]
                .as_array()
                .expect("statuses")
        ),
        ["sent", "read"]
    );
}

#[tokio::test]
async fn a_dead_webhook_target_does_not_slow_sends_and_is_given_up_on() {
    // A port that was just free: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhook", closed.local_addr().expect("address"));
    drop(closed);
    let mut target = gateway_sandbox::WebhookTarget::new(url, APP_SECRET);
    target.retry_initial_ms = 10;
    target.max_attempts = 2;
    let mut config = config();
    config.webhook = Some(target);
    let sandbox = TestSandbox::start(config).await;

    let started = Instant::now();
    for i in 0..50 {
        send_ok(
            &sandbox,
            &template(&format!("+165055510{i:02}"), "hello_world", &[]),
        )
        .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "sends took {:?}",
        started.elapsed()
    );
    wait_for("abandoned webhooks", || {
        Some(()).filter(|_| sandbox.sandbox.stats().webhooks_abandoned >= 150)
    })
    .await;
    let stats = sandbox.sandbox.stats();
    assert_eq!(stats.webhook_failed_attempts, stats.webhooks_abandoned * 2);
    assert_eq!(stats.webhooks_delivered, 0);
}

#[tokio::test]
async fn an_aged_inbound_is_dated_when_it_was_sent() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |_| {}).await;
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };
    let age = 23 * 3600 + 59 * 60;
    let before = unix_now() - age;
    let (status, answer) = sandbox
        .admin(
            reqwest::Method::POST,
            "inbound",
            Some(
                json!({"phone_number_id": NUMBER, "from": USER, "text": "yesterday",
                        "age_seconds": age}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let after = unix_now() - age;
    let message = wait_for("the inbound webhook", || {
        receiver.messages().into_iter().next()
    })
    .await;
    assert_eq!(message["id"], answer["wamid"]);
    let timestamp: u64 = message["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a string of Unix seconds");
    assert!((before..=after).contains(&timestamp), "{timestamp}");

    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_749_416_383);
    sandbox
        .sandbox
        .inbound_at(NUMBER, "+16505550009", "long ago", at)
        .expect("inbound");
    let message = wait_for("the second inbound webhook", || {
        receiver.messages().into_iter().nth(1)
    })
    .await;
    assert_eq!(message["timestamp"], "1749416383");
}

#[tokio::test]
async fn a_bsuid_user_writes_as_from_user_id_and_gets_its_own_window() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |_| {}).await;
    let bsuid = "US.13491208655302741918";
    sandbox.inbound(bsuid, "hi").await;
    let post = wait_for("the inbound webhook", || {
        receiver
            .received()
            .into_iter()
            .find(|r| r.answered == StatusCode::OK)
    })
    .await;
    let value = &post.json()["entry"][0]["changes"][0]["value"];
    assert_eq!(value["messages"][0]["from_user_id"], bsuid);
    assert!(value["messages"][0].get("from").is_none());
    assert_eq!(value["contacts"][0]["user_id"], bsuid);

    let reply = json!({"messaging_product": "whatsapp", "recipient": bsuid,
                       "type": "text", "text": {"body": "hello"}});
    send_ok(&sandbox, &reply).await;
    let (status, _) = sandbox
        .admin(
            reqwest::Method::POST,
            "close-window",
            Some(json!({"phone_number_id": NUMBER, "user": bsuid})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = sandbox.send(&reply).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 131_047)
    );
}

#[tokio::test]
async fn statuses_price_templates_per_message_or_per_conversation() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |_| {}).await;
    // Per-message pricing (v24 and later): a utility template outside the
    // window is billable; inside it, free; no conversation object.
    let outside = send_ok(&sandbox, &template(USER, "hello_world", &[])).await;
    let statuses = receiver
        .wait_for_statuses(&outside, &["sent", "delivered", "read"])
        .await;
    for status in &statuses {
        assert_eq!(
            status["pricing"],
            json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"})
        );
        assert!(status.get("conversation").is_none(), "{status}");
    }
    sandbox.inbound(USER_DIGITS, "hi").await;
    let inside = send_ok(&sandbox, &template(USER, "hello_world", &[])).await;
    let statuses = receiver.wait_for_statuses(&inside, &["sent"]).await;
    assert_eq!(
        statuses[0]["pricing"],
        json!({"billable": false, "pricing_model": "PMP", "type": "free_customer_service", "category": "utility"})
    );

    // Conversation-based pricing (webhook versions before v24): messages of
    // one category to one user within 24 h share a conversation.
    let mut statuses_config = sandbox.sandbox.statuses();
    statuses_config.conversations = true;
    sandbox.sandbox.set_statuses(statuses_config);
    let user = "+16505559876";
    let first = send_ok(&sandbox, &template(user, "hello_world", &[])).await;
    let second = send_ok(&sandbox, &template(user, "hello_world", &[])).await;
    let first = receiver
        .wait_for_statuses(&first, &["sent", "delivered", "read"])
        .await;
    let second = receiver.wait_for_statuses(&second, &["sent"]).await;
    let id = first[0]["conversation"]["id"].as_str().expect("an id");
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(first[0]["conversation"]["origin"]["type"], "utility");
    assert!(first[0]["conversation"]["expiration_timestamp"].is_string());
    assert!(
        first[1]["conversation"]
            .get("expiration_timestamp")
            .is_none()
    );
    assert_eq!(first[2]["conversation"]["id"], id);
    assert_eq!(second[0]["conversation"]["id"], id, "the same conversation");
    assert_eq!(
        first[1]["pricing"],
        json!({"billable": true, "pricing_model": "CBP", "category": "utility"})
    );
}
