//! A lease covers every send in flight (product.md, guarantees 3 and 4):
//! a worker that stops answering for a while never has another worker send
//! its messages again, and what Meta accepted is recorded even when Redis
//! was away meanwhile.

use std::time::Duration;

use gateway_sandbox::Faults;
use gateway_tests::{
    GatewayOptions, TestGateway, phone_number_id, rate_reports, send_counts, template_backlog,
    wait_until, wait_until_every,
};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const RATE: usize = 70;

/// Waits until the worker holds `count` entries of sender 0's queue: read,
/// their sends started or about to.
async fn wait_until_read(gateway: &TestGateway, count: usize) {
    let stream = gateway_queue::keys::queue(&phone_number_id(0));
    wait_until(
        "the worker to read the messages",
        Duration::from_secs(20),
        || async {
            let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(gateway_queue::keys::CONSUMER_GROUP)
                .query_async(&mut gateway.redis().await)
                .await
                .ok()?;
            (pending.count() >= count).then_some(())
        },
    )
    .await;
}

async fn wait_until_sent(gateway: &TestGateway, expected: usize) {
    wait_until_every(
        "every message to reach the sandbox",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { (send_counts(&gateway.sandbox.accepted()).len() >= expected).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_keeps_its_sends_and_nobody_sends_them_again() {
    // Meta answers after 8 s; the gateway waits up to 9 s, and its leases
    // last long enough to cover that.
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        graph_timeout_ms: 9_000,
        ..Default::default()
    })
    .await;
    gateway.sandbox.set_faults(Faults {
        latency_ms: 8_000,
        ..Faults::default()
    });
    let ids = gateway.send_all(&template_backlog(1, 200)).await;
    let first = gateway.spawn_worker(BINARY);
    wait_until_read(&gateway, 50).await;
    let _second = gateway.spawn_worker(BINARY);

    // The first worker stops answering for 6 s (no heartbeat, no record)
    // while its calls are in flight: a measured span, not a wait.
    first.suspend();
    tokio::time::sleep(Duration::from_secs(6)).await;
    first.resume();

    wait_until_sent(&gateway, ids.len()).await;
    let accepted = gateway.sandbox.accepted();
    let counts = send_counts(&accepted);
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} reached Meta once");
    }
    for (pnid, report) in rate_reports(&accepted) {
        assert!(
            report.max_in_one_second <= RATE,
            "{pnid}: {} sends in one second",
            report.max_in_one_second
        );
    }
    for id in &ids {
        gateway
            .wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_in_flight_while_redis_pauses_are_recorded_once() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    gateway.sandbox.set_faults(Faults {
        latency_ms: 1_000,
        ..Faults::default()
    });
    let ids = gateway.send_all(&template_backlog(1, 20)).await;
    gateway.start_worker().await;
    wait_until_read(&gateway, ids.len()).await;

    // Redis freezes for 4 s while the 20 calls are answered: their records
    // wait for it.
    gateway.redis.suspend();
    tokio::time::sleep(Duration::from_secs(4)).await;
    gateway.redis.resume();

    for id in &ids {
        gateway
            .wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }
    let counts = send_counts(&gateway.sandbox.accepted());
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} reached Meta once");
    }
}
