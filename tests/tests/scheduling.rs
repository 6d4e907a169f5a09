//! `send_after`, `expires_at` and `priority`: a message waits for its time,
//! is never sent late, and transactional messages overtake a bulk backlog.

use std::time::{Duration, SystemTime};

use gateway_tests::{GatewayOptions, TestGateway, rfc3339_in, wait_until};
use serde_json::{Value, json};

fn template(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_waits_for_its_time() {
    let gateway = TestGateway::start(GatewayOptions::default()).await;
    let mut message = template("+16505551234");
    message["send_after"] = rfc3339_in(Duration::from_secs(3)).into();
    let not_before = SystemTime::now() + Duration::from_millis(2_900);
    let (status, body) = gateway.send(&message).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "scheduled");
    let id = body["id"].as_str().expect("id").to_owned();
    let (_, record) = gateway.message(&id).await;
    assert_eq!(record["status"], "scheduled", "{record}");

    gateway
        .wait_for_status(&id, "sent", Duration::from_secs(15))
        .await;
    let sent = gateway.sandbox.accepted();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].at >= not_before, "sent before its send_after");
    assert_eq!(
        sent[0].biz_opaque_callback_data.as_deref(),
        Some(id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_never_sent() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let mut message = template("+16505551234");
    message["expires_at"] = rfc3339_in(Duration::from_millis(1_200)).into();
    let (status, body) = gateway.send(&message).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let fresh = gateway.send(&template("+16505554321")).await.1["id"]
        .as_str()
        .expect("id")
        .to_owned();

    tokio::time::sleep(Duration::from_millis(1_500)).await; // let it expire: the point of the test
    gateway.start_worker().await;
    let record = gateway
        .wait_for_status(&id, "expired", Duration::from_secs(15))
        .await;
    assert_eq!(
        record["history"]
            .as_array()
            .and_then(|h| h.last())
            .map(|e| e["reason"].clone()),
        Some("expires_at".into())
    );
    gateway
        .wait_for_status(&fresh, "sent", Duration::from_secs(15))
        .await;
    let sent = gateway.sandbox.accepted();
    assert!(
        sent.iter()
            .all(|m| m.biz_opaque_callback_data.as_deref() != Some(id.as_str())),
        "the expired message was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_messages_overtake_a_bulk_backlog() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        rate_per_second: 20,
        ..Default::default()
    })
    .await;
    let bulk: Vec<Value> = (0..200)
        .map(|i| {
            let mut m = template(&format!("+1650555{i:04}"));
            m["priority"] = "bulk".into();
            m
        })
        .collect();
    let bulk_ids = gateway.send_all(&bulk).await;
    assert!(
        bulk_ids.iter().all(|id| id.contains("-b")),
        "bulk ids name their lane"
    );
    let urgent: Vec<Value> = (0..5)
        .map(|i| template(&format!("+1650666{i:04}")))
        .collect();
    let urgent_ids = gateway.send_all(&urgent).await;

    gateway.start_worker().await;
    wait_until("the urgent messages", Duration::from_secs(30), || async {
        let sent = gateway.sandbox.accepted();
        let done = urgent_ids.iter().all(|id| {
            sent.iter()
                .any(|m| m.biz_opaque_callback_data.as_deref() == Some(id))
        });
        done.then_some(())
    })
    .await;
    let order: Vec<String> = gateway
        .sandbox
        .accepted()
        .into_iter()
        .filter_map(|m| m.biz_opaque_callback_data)
        .collect();
    let last_urgent = order
        .iter()
        .rposition(|id| urgent_ids.contains(id))
        .expect("urgent sent");
    // At most the few bulk messages read before the transactional ones went first.
    assert!(
        last_urgent < 15,
        "the urgent messages waited behind the bulk backlog: {last_urgent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_scheduled_past_its_max_age_is_sent_at_its_time() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let mut message = template("+16505551234");
    // Further ahead than a sender's max_age (24 h): its age counts from
    // its send_after, not from when it was accepted.
    message["send_after"] = rfc3339_in(Duration::from_secs(25 * 3_600)).into();
    let (status, body) = gateway.send(&message).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();

    // 25 h later, through the gateway's clock (the api and the worker run
    // in this process): a worker starting then finds the message due.
    gateway_domain::clock::advance(Duration::from_secs(25 * 3_600 + 1));
    gateway.start_worker().await;
    let record = gateway
        .wait_for_status(&id, "sent", Duration::from_secs(15))
        .await;
    assert_eq!(gateway.sandbox.accepted().len(), 1, "{record}");
}
