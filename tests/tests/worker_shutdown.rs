//! SIGTERM: a worker finishes what it holds and exits promptly, handing its
//! senders over, also when Redis is gone.

use std::time::{Duration, Instant};

use gateway_tests::{GatewayOptions, TestGateway};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_worker_hands_its_senders_over_and_loses_nothing() {
    let options = GatewayOptions {
        start_worker: false,
        worker_toml: "shutdown_grace_ms = 7000".into(),
        ..Default::default()
    };
    let gateway = TestGateway::start(options).await;
    let ids = gateway
        .send_all(
            &(0..200)
                .map(|i| template(&format!("+1650555{i:04}")))
                .collect::<Vec<_>>(),
        )
        .await;
    let mut first = gateway.spawn_worker(BINARY);
    gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(15))
        .await;
    let second = gateway.spawn_worker(BINARY);
    let stopping = Instant::now();
    assert!(
        first.terminate(Duration::from_secs(10)),
        "the worker did not exit after SIGTERM"
    );
    assert!(stopping.elapsed() < Duration::from_secs(10));
    for id in &ids {
        gateway
            .wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }
    // The stopped worker's name is gone from the sender's consumer group:
    // rollouts do not pile names up.
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(gateway_queue::keys::queue(&gateway_tests::phone_number_id(
            0,
        )))
        .arg(gateway_queue::keys::CONSUMER_GROUP)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("XINFO CONSUMERS");
    assert_eq!(consumers.consumers.len(), 1, "{:?}", consumers.consumers);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_still_exits_on_sigterm() {
    let options = GatewayOptions {
        senders: 20,
        start_worker: false,
        worker_toml: "shutdown_grace_ms = 7000".into(),
        ..Default::default()
    };
    let mut gateway = TestGateway::start(options).await;
    let ids = gateway.send_all(&[template("+16505550001")]).await;
    let mut worker = gateway.spawn_worker(BINARY);
    gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(15))
        .await;
    gateway.redis.stop();
    assert!(
        worker.terminate(Duration::from_secs(15)),
        "the worker hung on SIGTERM without Redis"
    );
}
