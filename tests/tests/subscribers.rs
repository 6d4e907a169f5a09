//! The internal services' side of the webhooks: inbound messages and
//! statuses forwarded, signed, to the configured subscribers and to a
//! message's `callback_url`, and kept for a subscriber that is down until it
//! comes back.

use std::collections::HashSet;
use std::time::Duration;

use gateway_tests::{
    GatewayOptions, KEY_ALL, SignedReceiver, TestGateway, phone_number_id, wait_until,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SUBSCRIBER_SECRET: &str = "crm-secret";

/// A loopback port nothing listens on yet.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// (type, message or wamid, status): what makes a notification unique.
fn identity(body: &Value) -> (String, String, String) {
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    (
        text("type"),
        text("message_id") + &text("wamid"),
        text("status"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_is_down_gets_every_event_once_it_is_back() {
    let subscriber_port = free_port();
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        extra_toml: format!(
            "[[subscribers]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{subscriber_port}/events\"\n\
             secret_env = \"CRM_SECRET\"\n\
             [notify]\ninitial_backoff_ms = 50\nmax_backoff_ms = 300\nmax_attempts = 1000\n"
        ),
        extra_env: vec![("CRM_SECRET".into(), SUBSCRIBER_SECRET.into())],
        ..GatewayOptions::default()
    })
    .await;
    let callbacks = SignedReceiver::default();
    let callback_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let callback_url = format!(
        "http://{}/events",
        callback_listener.local_addr().expect("addr")
    );
    // Callbacks are signed with the key of the client that sent the message.
    callbacks.serve(callback_listener, KEY_ALL).await;

    let pnid = phone_number_id(0);
    let users: Vec<String> = (0..3).map(|i| format!("+1650555{i:04}")).collect();
    for user in &users {
        gateway
            .sandbox
            .inbound(&pnid, user, "hello")
            .expect("inbound");
    }
    let messages: Vec<Value> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            json!({"from": "s0", "to": user, "type": "template",
                   "template": {"name": "hello_world", "language": {"code": "en_US"}},
                   "callback_url": callback_url, "metadata": {"order": i}})
        })
        .collect();
    let ids = gateway.send_all(&messages).await;
    for id in &ids {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
    }
    // While the subscriber is down its deliveries fail and wait in Redis.
    wait_until(
        "deliveries to the subscriber to fail",
        Duration::from_secs(10),
        || async {
            let text = gateway.metrics.render();
            text.lines()
                .any(|l| {
                    l.starts_with(
                        "gateway_notification_attempts_failed_total{target=\"subscriber:crm\"}",
                    )
                })
                .then_some(())
        },
    )
    .await;

    let subscriber = SignedReceiver::default();
    let listener = TcpListener::bind(("127.0.0.1", subscriber_port))
        .await
        .expect("bind the subscriber's port");
    subscriber.serve(listener, SUBSCRIBER_SECRET).await;

    // 3 inbound messages and sent, delivered, read for each of 3 messages.
    let got = wait_until(
        "every event at the subscriber",
        Duration::from_secs(30),
        || async {
            let unique: HashSet<_> = subscriber.bodies().iter().map(identity).collect();
            (unique.len() >= 12).then_some(subscriber.bodies())
        },
    )
    .await;
    let inbound: Vec<&Value> = got.iter().filter(|b| b["type"] == "inbound").collect();
    let inbound_from: HashSet<&str> = inbound.iter().filter_map(|b| b["from"].as_str()).collect();
    assert_eq!(
        inbound_from,
        users.iter().map(String::as_str).collect(),
        "{got:?}"
    );
    assert!(
        inbound
            .iter()
            .all(|b| b["message"]["text"]["body"] == "hello")
    );
    let statuses: HashSet<_> = got
        .iter()
        .filter(|b| b["type"] == "status")
        .map(identity)
        .collect();
    assert_eq!(statuses.len(), 9, "{got:?}");
    assert_eq!(subscriber.forged(), 0);

    // The callback URL heard about its own messages, with their metadata.
    let got = wait_until(
        "every status at the callback URL",
        Duration::from_secs(30),
        || async {
            let unique: HashSet<_> = callbacks.bodies().iter().map(identity).collect();
            (unique.len() >= 9).then_some(callbacks.bodies())
        },
    )
    .await;
    for body in &got {
        assert_eq!(body["type"], "status");
        let index = ids
            .iter()
            .position(|id| body["message_id"] == id.as_str())
            .expect("one of ours");
        assert_eq!(body["metadata"]["order"], index, "{body}");
    }
    assert_eq!(callbacks.forged(), 0);
}
