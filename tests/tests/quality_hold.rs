//! Quality that acts: when Meta rates a sender's number RED, its bulk
//! messages stay queued (not read, not sent, not failed) while its
//! transactional messages go on; when the rating is GREEN again, bulk
//! drains. The rating reaches the worker as Meta's
//! `phone_number_quality_update` webhook (the sandbox posts it), and a
//! worker that takes the sender over keeps the hold from the first moment.
//! Real Redis, the sandbox, the api and workers.

use std::time::Duration;

use gateway_sandbox::{NumberHealthChange, QualityRating};
use gateway_tests::{GatewayOptions, TestGateway, phone_number_id, wait_until};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(to: &str, priority: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "template", "priority": priority,
        "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

/// Bulk messages go to +1650555 1xxx, transactional ones to +1650555 2xxx.
fn bulk(count: usize, from: usize) -> Vec<Value> {
    (from..from + count)
        .map(|i| template(&format!("+16505551{i:03}"), "bulk"))
        .collect()
}

fn transactional(count: usize, from: usize) -> Vec<Value> {
    (from..from + count)
        .map(|i| template(&format!("+16505552{i:03}"), "transactional"))
        .collect()
}

/// Calls that reached the sandbox for recipients starting with `prefix`
/// (digits, as the sandbox records them).
fn calls_to(gateway: &TestGateway, prefix: &str) -> usize {
    gateway
        .sandbox
        .accepted()
        .iter()
        .filter(|m| m.recipient.starts_with(prefix))
        .count()
}

fn set_quality(gateway: &TestGateway, rating: QualityRating) {
    gateway
        .sandbox
        .change_number(
            &phone_number_id(0),
            NumberHealthChange {
                quality_rating: Some(rating),
                ..NumberHealthChange::default()
            },
        )
        .expect("the sandbox knows the number");
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Waits until this process's worker exports `held` for s0, with a
/// quality rating among `quality`.
async fn wait_for_gauges(gateway: &TestGateway, held: f64, quality: &[f64]) {
    wait_until(
        &format!("bulk held {held}, quality in {quality:?}"),
        Duration::from_secs(20),
        || async {
            let text = gateway.api_metrics().await;
            let rating = sample(&text, r#"gateway_sender_quality_rating{sender="s0"}"#);
            (sample(&text, r#"gateway_sender_bulk_held{sender="s0"}"#) == Some(held)
                && rating.is_some_and(|r| quality.contains(&r)))
            .then_some(())
        },
    )
    .await;
}

/// What Redis holds of the bulk stream: entries, and entries read (pending
/// for some consumer).
async fn bulk_stream(gateway: &TestGateway) -> (u64, u64) {
    let key = gateway_queue::keys::bulk(&phone_number_id(0));
    let mut redis = gateway.redis().await;
    let length: u64 = redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("XLEN");
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&key)
        .arg("workers")
        .query_async(&mut redis)
        .await
        .expect("XPENDING");
    let read = match pending {
        redis::Value::Array(summary) => match summary.first() {
            Some(redis::Value::Int(count)) => u64::try_from(*count).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    };
    (length, read)
}

async fn stored_quality(gateway: &TestGateway) -> Option<String> {
    redis::cmd("GET")
        .arg(gateway_queue::keys::quality(&phone_number_id(0)))
        .query_async(&mut gateway.redis().await)
        .await
        .expect("GET")
}

async fn assert_still_queued(gateway: &TestGateway, ids: &[String]) {
    for id in ids {
        let (status, record) = gateway.message(id).await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["status"], "queued", "{record}");
    }
    assert_eq!(
        bulk_stream(gateway).await,
        (ids.len() as u64, 0),
        "every bulk message in its stream, none read"
    );
    assert_eq!(
        calls_to(gateway, "16505551"),
        0,
        "no bulk call reached Meta"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_number_holds_bulk_while_transactional_messages_go() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        pair_interval_ms: 100,
        ..Default::default()
    })
    .await;
    // The owner exports the rating as soon as it has taken the sender:
    // unknown, or GREEN once polled.
    wait_for_gauges(&gateway, 0.0, &[0.0, 1.0]).await;

    // Meta turns the number RED and says so on the webhook.
    set_quality(&gateway, QualityRating::Red);
    wait_for_gauges(&gateway, 1.0, &[3.0]).await;
    assert_eq!(stored_quality(&gateway).await.as_deref(), Some("RED"));

    // Bulk first, then transactional: the transactional messages go, the
    // bulk ones stay queued.
    let bulk_ids = gateway.send_all(&bulk(10, 0)).await;
    let first = gateway.send_all(&transactional(5, 0)).await;
    for id in &first {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(20))
            .await;
    }
    // A second round after the first has been answered: the sender had
    // time to send bulk in between, had it not been held.
    let second = gateway.send_all(&transactional(5, 5)).await;
    for id in &second {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(20))
            .await;
    }
    assert_eq!(calls_to(&gateway, "16505552"), 10);
    assert_still_queued(&gateway, &bulk_ids).await;

    // GREEN again: the bulk messages drain.
    set_quality(&gateway, QualityRating::Green);
    for id in &bulk_ids {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
    }
    assert_eq!(calls_to(&gateway, "16505551"), 10, "each bulk message once");
    wait_for_gauges(&gateway, 0.0, &[1.0]).await;
    assert_eq!(bulk_stream(&gateway).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_taking_over_a_red_sender_holds_its_bulk_from_the_start() {
    let mut gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        start_worker: false,
        pair_interval_ms: 100,
        ..Default::default()
    })
    .await;
    let mut first_worker = gateway.spawn_worker(BINARY);
    wait_until("the worker to take s0", Duration::from_secs(20), || async {
        gateway.lease_owners(1).await[0].clone()
    })
    .await;
    set_quality(&gateway, QualityRating::Red);
    wait_until(
        "the RED rating stored for the owner",
        Duration::from_secs(20),
        || async { (stored_quality(&gateway).await.as_deref() == Some("RED")).then_some(()) },
    )
    .await;
    let bulk_ids = gateway.send_all(&bulk(5, 0)).await;
    for id in &gateway.send_all(&transactional(3, 0)).await {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(20))
            .await;
    }
    assert_still_queued(&gateway, &bulk_ids).await;

    // The owner hands the sender over to a new worker (in this process),
    // which has polled nothing yet: it learns RED from Redis.
    assert!(
        first_worker.terminate(Duration::from_secs(20)),
        "the first worker stops"
    );
    gateway.start_worker().await;
    wait_for_gauges(&gateway, 1.0, &[3.0]).await;
    for id in &gateway.send_all(&transactional(3, 3)).await {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(20))
            .await;
    }
    assert_still_queued(&gateway, &bulk_ids).await;

    set_quality(&gateway, QualityRating::Yellow);
    for id in &bulk_ids {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
    }
    wait_for_gauges(&gateway, 0.0, &[2.0]).await;
    assert_eq!(calls_to(&gateway, "16505551"), 5);
}
