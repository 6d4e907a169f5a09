//! Idempotency keys and `/send/batch`.

use std::time::Duration;

use gateway_tests::{GatewayOptions, KEY_ALL, TestGateway, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_returns_the_first_id_and_a_changed_payload_conflicts() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let message = json!({"from": "s0", "to": "+16505551234", "type": "text", "text": {"body": "your code is 1234"}, "idempotency_key": "otp-42"});
    let (status, first) = gateway.send(&message).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = gateway.send(&message).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(gateway.queue_len(0).await, 1);

    let mut changed = message.clone();
    changed["text"]["body"] = "your code is 9999".into();
    let (status, conflict) = gateway.send(&changed).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["field"], "idempotency_key");
    assert_eq!(gateway.queue_len(0).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stores_the_valid_items_and_names_the_bad_ones() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        ..Default::default()
    })
    .await;
    let template = json!({"name": "hello_world", "language": {"code": "en_US"}});
    let batch = json!({"messages": [
        {"from": "s0", "to": "+16505550001", "type": "template", "template": template},
        {"from": "s1", "to": "+16505550002", "type": "template", "template": template},
        {"from": "s0", "to": "+16505550003", "type": "text", "text": {"body": ""}},
        {"from": "s1", "to": "+16505550004", "type": "template", "template": template},
    ]});
    let (status, body) = gateway
        .post("/send/batch", Some(KEY_ALL), batch.to_string().into_bytes())
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[2]["error"]["field"], "messages[2].text.body",
        "{body}"
    );
    let ids: Vec<&str> = [0, 1, 3]
        .iter()
        .map(|&i| {
            assert_eq!(results[i]["status"], "queued", "{body}");
            assert_eq!(results[i]["index"], i);
            results[i]["id"].as_str().expect("id")
        })
        .collect();
    for id in ids {
        gateway
            .wait_for_status(id, "sent", Duration::from_secs(10))
            .await;
    }
    wait_until("three sends", Duration::from_secs(5), || async {
        (gateway.sandbox.accepted().len() == 3).then_some(())
    })
    .await;

    let too_many: Vec<_> = (0..1_001).map(|_| json!({"from": "s0", "to": "+16505550001", "type": "template", "template": template})).collect();
    let (status, body) = gateway
        .post(
            "/send/batch",
            Some(KEY_ALL),
            json!({ "messages": too_many }).to_string().into_bytes(),
        )
        .await;
    // Over the body limit or over the item limit: refused either way, nothing stored.
    assert!(status == 413 || status == 422, "{status}: {body}");
}
