//! `POST /messages/read`: a read receipt (with the typing indicator) for an
//! inbound message reaches Meta (the sandbox) within a second while the
//! sender has a minute of backlog, and counts towards the sender's rate:
//! messages and receipts together never pass it in any second. Bad input
//! and messages the sender never received are refused, with nothing sent.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use gateway_tests::{
    GatewayOptions, KEY_ALL, KEY_ONE, TestGateway, phone_number_id, template_backlog, wait_until,
    wait_until_every,
};
use serde_json::{Value, json};

const RATE: usize = 70;

async fn mark_read(gateway: &TestGateway, key: &str, body: Value) -> (u16, Value) {
    gateway
        .post("/messages/read", Some(key), body.to_string().into_bytes())
        .await
}

/// A user writes to `s0`; returns the message's wamid once the gateway has
/// handled it.
async fn inbound(gateway: &TestGateway, user: &str) -> String {
    let pnid = phone_number_id(0);
    let wamid = gateway
        .sandbox
        .inbound(&pnid, user, "hello")
        .expect("inbound");
    let seen = gateway_queue::keys::inbound(&pnid, &wamid);
    let redis = gateway.redis().await;
    wait_until(
        "the gateway to handle the message",
        Duration::from_secs(10),
        || {
            let (mut redis, seen) = (redis.clone(), seen.clone());
            async move {
                let handled: bool = redis::cmd("EXISTS")
                    .arg(&seen)
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                handled.then_some(())
            }
        },
    )
    .await;
    wamid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_skips_a_minute_of_backlog_and_counts_towards_the_rate() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..Default::default()
    })
    .await;
    // A minute of templates at the sender's rate.
    let backlog = gateway.send_all(&template_backlog(1, RATE * 60)).await;

    let mut receipts = Vec::new();
    for n in 0..20 {
        let wamid = inbound(&gateway, &format!("+1650777{n:04}")).await;
        let asked = SystemTime::now();
        let started = Instant::now();
        let (status, answer) = mark_read(
            &gateway,
            KEY_ALL,
            json!({"from": "s0", "message_id": wamid, "typing_indicator": {"type": "text"}}),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "queued", "{answer}");
        let receipt = wait_until_every(
            "the receipt to reach the sandbox",
            Duration::from_secs(10),
            Duration::from_millis(5),
            || {
                let wamid = wamid.clone();
                let gateway = &gateway;
                async move {
                    gateway
                        .sandbox
                        .read_receipts()
                        .into_iter()
                        .find(|r| r.message_id == wamid)
                }
            },
        )
        .await;
        let took = receipt.at.duration_since(asked).unwrap_or_default();
        println!("receipt {n}: {took:?} (seen after {:?})", started.elapsed());
        assert!(receipt.typing, "{receipt:?}");
        assert!(
            took < Duration::from_secs(1),
            "receipt {n} waited {took:?} behind the backlog"
        );
        receipts.push(receipt);
    }
    let left = gateway.queue_len(0).await;
    assert!(
        left > (RATE * 30) as u64,
        "the backlog was still there: {left} of {}",
        backlog.len()
    );

    // Messages and receipts together, as Meta counts the number's calls.
    let mut calls: Vec<SystemTime> = gateway.sandbox.accepted().iter().map(|m| m.at).collect();
    calls.extend(receipts.iter().map(|r| r.at));
    calls.sort();
    let busiest = (0..calls.len())
        .map(|i| {
            calls[i..]
                .iter()
                .take_while(|t| {
                    t.duration_since(calls[i]).unwrap_or_default() < Duration::from_secs(1)
                })
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= RATE, "{busiest} calls in one second");
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.rejections.get(&130429), None, "{stats:?}");
    assert_eq!(stats.read_receipts, 20, "each once: {stats:?}");
    let distinct: HashSet<&str> = receipts.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(distinct.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_receipts_are_refused_and_nothing_is_sent() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        webhooks: true,
        ..Default::default()
    })
    .await;
    let wamid = inbound(&gateway, "+16507770001").await;
    let cases = [
        (
            KEY_ALL,
            json!({"from": "s0", "message_id": "wamid.unknown"}),
            404,
            "not_found",
            None,
        ),
        (
            KEY_ALL,
            json!({"from": "s1", "message_id": wamid}),
            404,
            "not_found",
            None,
        ),
        (
            KEY_ALL,
            json!({"from": "s0"}),
            422,
            "missing_field",
            Some("message_id"),
        ),
        (
            KEY_ALL,
            json!({"message_id": wamid}),
            422,
            "missing_field",
            Some("from"),
        ),
        (
            KEY_ALL,
            json!({"from": "s0", "message_id": wamid, "typing_indicator": {"type": "audio"}}),
            422,
            "invalid_value",
            Some("typing_indicator.type"),
        ),
        (
            KEY_ALL,
            json!({"from": "s0", "message_id": "wamid. x"}),
            422,
            "invalid_value",
            Some("message_id"),
        ),
        (
            KEY_ALL,
            json!({"from": "s0", "message_id": wamid, "extra": 1}),
            400,
            "malformed_json",
            None,
        ),
        (
            KEY_ONE,
            json!({"from": "s1", "message_id": wamid}),
            403,
            "forbidden",
            Some("from"),
        ),
    ];
    for (key, body, status, code, field) in cases {
        let (answer_status, answer) = mark_read(&gateway, key, body.clone()).await;
        assert_eq!(answer_status, status, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        }
    }
    let (status, answer) = gateway
        .post(
            "/messages/read",
            None,
            json!({"from": "s0", "message_id": wamid})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 401, "{answer}");

    // A good one goes, once; the bad ones sent nothing.
    let (status, answer) = mark_read(&gateway, KEY_ONE, json!({"message_id": wamid})).await;
    assert_eq!(status, 202, "{answer}");
    wait_until(
        "the receipt to reach the sandbox",
        Duration::from_secs(10),
        || async { (gateway.sandbox.stats().read_receipts == 1).then_some(()) },
    )
    .await;
    let receipts = gateway.sandbox.read_receipts();
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0].message_id, wamid);
    assert!(!receipts[0].typing);
}
