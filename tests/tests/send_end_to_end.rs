//! A message posted to `/send` travels through Redis to a worker and reaches
//! the Cloud API (the sandbox) exactly once, and `GET /messages/{id}` shows
//! it `sent` with the sandbox's wamid.

use std::collections::HashMap;
use std::time::Duration;

use gateway_sandbox::Rules;
use gateway_tests::{GatewayOptions, TestGateway, wait_until};
use serde_json::{Value, json};

/// One payload of each supported type, as a service would copy it from Meta's docs.
fn payload(i: usize, senders: usize) -> Value {
    let from = format!("s{}", i % senders);
    let to = format!("+1 (650) 555-{:04}", i % 10_000);
    let content = match i % 7 {
        0 => json!({"type": "text", "text": {"body": format!("hello {i}"), "preview_url": false}}),
        1 => {
            json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}})
        }
        2 => {
            json!({"type": "image", "image": {"link": "https://example.com/cat.jpg", "caption": "a cat"}})
        }
        3 => {
            json!({"type": "document", "document": {"link": "https://example.com/invoice.pdf", "filename": "invoice.pdf"}})
        }
        4 => json!({"type": "audio", "audio": {"id": "1013859600285441"}}),
        5 => json!({"type": "video", "video": {"link": "https://example.com/clip.mp4"}}),
        _ => {
            if i.is_multiple_of(2) {
                json!({"type": "interactive", "interactive": {
                    "type": "button",
                    "body": {"text": "Confirm your order?"},
                    "action": {"buttons": [
                        {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                        {"type": "reply", "reply": {"id": "no", "title": "No"}}
                    ]}
                }})
            } else {
                json!({"type": "interactive", "interactive": {
                    "type": "list",
                    "body": {"text": "Pick a slot"},
                    "action": {"button": "Slots", "sections": [
                        {"title": "Morning", "rows": [{"id": "9", "title": "9:00"}, {"id": "10", "title": "10:00", "description": "Quiet"}]}
                    ]}
                }})
            }
        }
    };
    let mut body = content;
    body["from"] = from.into();
    body["to"] = to.into();
    body["metadata"] = json!({"order": i});
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_mixed_messages_reach_the_cloud_api_exactly_once() {
    const SENDERS: usize = 10;
    const MESSAGES: usize = 1_000;
    // Meta's throughput, pair and window rules are for the limiter and window
    // issues; tokens, validation and templates stay on.
    let rules = Rules {
        throughput: false,
        pair: false,
        window: false,
        ..Rules::default()
    };
    let gateway = TestGateway::start(GatewayOptions {
        senders: SENDERS,
        rules,
        ..Default::default()
    })
    .await;

    let mut ids = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let (status, body) = gateway.send(&payload(i, SENDERS)).await;
        assert_eq!(status, 202, "message {i}: {body}");
        assert_eq!(body["status"], "queued");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }

    let accepted = wait_until(
        "every message to reach the sandbox",
        Duration::from_secs(60),
        || async {
            let accepted = gateway.sandbox.accepted();
            (accepted.len() >= MESSAGES).then_some(accepted)
        },
    )
    .await;
    assert_eq!(accepted.len(), MESSAGES, "the sandbox saw duplicates");
    let mut wamid_by_id: HashMap<String, String> = HashMap::new();
    for message in &accepted {
        let id = message
            .biz_opaque_callback_data
            .clone()
            .expect("callback data carries the id");
        assert!(
            wamid_by_id
                .insert(id.clone(), message.wamid.clone())
                .is_none(),
            "{id} sent twice"
        );
    }

    for (i, id) in ids.iter().enumerate() {
        let record = gateway
            .wait_for_status(id, "sent", Duration::from_secs(10))
            .await;
        assert_eq!(
            record["wamid"].as_str(),
            wamid_by_id.get(id).map(String::as_str),
            "{id}"
        );
        assert_eq!(record["from"], format!("s{}", i % SENDERS));
        assert_eq!(record["to"], format!("+1650555{:04}", i % 10_000));
        assert_eq!(record["metadata"]["order"], i);
        let history: Vec<&str> = record["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter_map(|event| event["status"].as_str())
            .collect();
        assert_eq!(history, ["queued", "sent"], "{id}");
    }
    for sender in 0..SENDERS {
        assert_eq!(
            gateway.queue_len(sender).await,
            0,
            "sender {sender}'s queue drained"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_errors_are_kept_on_the_message() {
    // Queued before any worker has read the template registry (once it
    // has, /send refuses an unknown template itself): Meta answers 132001.
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let (status, body) = gateway
        .send(
            &json!({"from": "s0", "to": "+16505551234", "type": "template",
            "template": {"name": "no_such_template", "language": {"code": "en_US"}}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id");
    gateway.start_worker().await;
    let record = gateway
        .wait_for_status(id, "failed", Duration::from_secs(10))
        .await;
    assert_eq!(record["error"]["code"], 132001, "{record}");
    assert!(record.get("wamid").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_before_a_worker_starts_are_sent_when_it_does() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let (status, body) = gateway
        .send(
            &json!({"from": "s0", "to": "+16505551234", "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let (_, record) = gateway.message(&id).await;
    assert_eq!(record["status"], "queued");
    assert_eq!(gateway.queue_len(0).await, 1);

    gateway.start_worker().await;
    gateway
        .wait_for_status(&id, "sent", Duration::from_secs(10))
        .await;
}
