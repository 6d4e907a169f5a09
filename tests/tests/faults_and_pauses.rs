//! Meta's errors as a worker meets them: throttling, the pair limit and
//! server errors are retried until every message is sent; permanent errors
//! end in the dead letters and can be replayed once fixed; a sender with a
//! bad token is paused without holding up the others.

use std::time::Duration;

use gateway_sandbox::{Faults, Rules};
use gateway_tests::{GatewayOptions, KEY_ALL, TestGateway, wait_until_every};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(from: &str, to: &str, name: &str) -> Value {
    json!({"from": from, "to": to, "type": "template", "template": {"name": name, "language": {"code": "en_US"}}})
}

async fn wait_for(
    gateway: &TestGateway,
    ids: &[String],
    status: &str,
    deadline: Duration,
) -> Vec<Value> {
    let mut records = Vec::new();
    for id in ids {
        records.push(gateway.wait_for_status(id, status, deadline).await);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_pair_limits_and_server_errors_are_retried_until_sent() {
    // A pair burst of 3 is more than Meta's rule allows after its 6 s burst
    // window: the fourth message to one recipient meets 131056.
    let options = GatewayOptions {
        senders: 2,
        start_worker: false,
        worker_toml: "pair_burst = 3\nmax_attempts = 20".into(),
        ..Default::default()
    };
    let gateway = TestGateway::start(options).await;
    // Templates the sandbox does not know (132001), queued before a worker
    // has read the template registry (after, /send refuses them itself).
    let broken = gateway
        .send_all(&[
            template("s0", "+16505558888", "no_such_template"),
            template("s1", "+16505558889", "no_such_template"),
        ])
        .await;
    let _workers = [gateway.spawn_worker(BINARY), gateway.spawn_worker(BINARY)];

    // Six messages to one recipient: three go as a burst, the next ones
    // every 6 s, and Meta's rule (after a burst of three, wait 18 s) answers
    // 131056 to the fifth at the latest.
    let mut ids = gateway
        .send_all(&vec![template("s0", "+16505559999", "hello_world"); 6])
        .await;
    wait_until_every(
        "a 131056 from the sandbox",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            (gateway
                .sandbox
                .stats()
                .rejections
                .get(&131056)
                .copied()
                .unwrap_or(0)
                > 0)
            .then_some(())
        },
    )
    .await;

    // Then throttling for 5 s and one answer in five a server error.
    gateway.sandbox.set_faults(Faults {
        error_5xx_rate: 0.2,
        throttle_for_ms: 5_000,
        ..Faults::default()
    });
    let messages: Vec<Value> = (0..100)
        .map(|i| {
            template(
                &format!("s{}", i % 2),
                &format!("+1650555{:04}", i),
                "hello_world",
            )
        })
        .collect();
    ids.extend(gateway.send_all(&messages).await);

    let records = wait_for(&gateway, &ids, "sent", Duration::from_secs(120)).await;
    let max_attempts = records
        .iter()
        .filter_map(|r| r["attempts"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        max_attempts > 1,
        "faults were injected, so some messages needed retries"
    );
    // 20 % server errors and 5 s of throttling can take a message past the
    // default of 8 attempts now and then; the bound is what is tested.
    assert!(max_attempts <= 20, "attempts are bounded: {max_attempts}");
    let stats = gateway.sandbox.stats();
    assert!(
        stats.rejections.get(&130429).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(
        stats.rejections.get(&131056).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    let sent_ids: std::collections::HashSet<_> = gateway
        .sandbox
        .accepted()
        .into_iter()
        .filter_map(|m| m.biz_opaque_callback_data)
        .collect();
    assert!(ids.iter().all(|id| sent_ids.contains(id)));

    // Permanent errors fail at once, with Meta's code, into the dead letters.
    for record in wait_for(&gateway, &broken, "failed", Duration::from_secs(30)).await {
        assert_eq!(record["error"]["code"], 132001, "{record}");
        // A 5xx may come first; the 132001 itself is never retried.
        let history = record["history"].as_array().expect("history");
        let retried_after_132001 = history
            .iter()
            .any(|e| e["status"] == "retrying" && e["error_code"] == 132001);
        assert!(!retried_after_132001, "{record}");
        assert_eq!(
            history.last().map(|e| e["reason"].clone()),
            Some("permanent_error".into()),
            "{record}"
        );
    }
    let (ok, listed) = gateway.command(BINARY, &["dlq", "list", "--code", "132001", "--json"]);
    assert!(ok, "{listed}");
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed.len(), 2);

    // Fixed (the template now exists, as far as the sandbox cares): replay
    // through the API, and both are sent once, under their own ids.
    gateway.sandbox.set_faults(Faults::default());
    gateway.sandbox.set_rules(Rules {
        templates: false,
        ..Rules::default()
    });
    let (status, body) = gateway
        .post(
            "/dead-letters/replay",
            Some(KEY_ALL),
            json!({"code": 132001}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 2);
    wait_for(&gateway, &broken, "sent", Duration::from_secs(30)).await;
    let (_, after) = gateway.command(BINARY, &["dlq", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&after)
            .expect("json")
            .len(),
        0
    );
    let replayed_sends = gateway
        .sandbox
        .accepted()
        .iter()
        .filter(|m| {
            m.biz_opaque_callback_data
                .as_ref()
                .is_some_and(|id| broken.contains(id))
        })
        .count();
    assert_eq!(replayed_sends, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_pauses_only_its_sender_and_keeps_its_queue() {
    let options = GatewayOptions {
        senders: 3,
        start_worker: false,
        wrong_token_for: Some(1),
        ..Default::default()
    };
    let gateway = TestGateway::start(options).await;
    let messages: Vec<Value> = (0..60)
        .map(|i| {
            template(
                &format!("s{}", i % 3),
                &format!("+1650555{:04}", i),
                "hello_world",
            )
        })
        .collect();
    let ids = gateway.send_all(&messages).await;
    let _worker = gateway.spawn_worker(BINARY);

    let healthy: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, id)| id.clone())
        .collect();
    wait_for(&gateway, &healthy, "sent", Duration::from_secs(30)).await;
    assert_eq!(
        gateway.queue_len(1).await,
        20,
        "the paused sender's queue is kept"
    );
    let (_, first) = gateway.message(&ids[1]).await;
    assert_eq!(first["status"], "retrying", "{first}");
    assert_eq!(first["error"]["code"], 190, "{first}");
    // One attempt, then the sender stopped: the backlog was not burned through.
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.rejections.get(&190).copied(), Some(1), "{stats:?}");

    let (ok, out) = gateway.command(BINARY, &["senders", "resume", "s1", "--json"]);
    assert!(ok, "{out}");
    assert!(out.contains("\"resumed\""), "{out}");
    // The token is still wrong: the next attempt pauses the sender again.
    wait_until_every(
        "the sender to be paused again",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            (gateway.sandbox.stats().rejections.get(&190).copied() == Some(2)).then_some(())
        },
    )
    .await;
    assert_eq!(gateway.queue_len(1).await, 20);
}
