//! Status webhooks that outrun Meta's answer to the send, end to end: the
//! sandbox holds each 200 until the message's status webhooks have reached
//! the api (`StatusConfig::answer_after_status_ms`), so every status names a
//! message whose record does not show that send yet. The worker keeps such a
//! status and tries it again once the record has the wamid; had it dropped
//! them, the failures below would never be recorded (the messages would stay
//! `sent`) and the good messages would stop at `sent` too.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use gateway_sandbox::{StatusConfig, UserConfig};
use gateway_tests::{GatewayOptions, KEY_ALL, SignedReceiver, TestGateway, wait_until_every};
use serde_json::{Value, json};

const MESSAGES: usize = 50;
/// How long each answer follows the message's first status webhook.
const ANSWER_AFTER_STATUS_MS: u64 = 300;
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn phone(i: usize) -> String {
    format!("+1650555{i:04}")
}

fn template_to(to: &str, callback_url: Option<&str>) -> Value {
    let mut message = json!({"from": "s0", "to": to, "type": "template",
                             "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    if let Some(url) = callback_url {
        message["callback_url"] = json!(url);
    }
    message
}

/// A gateway whose sandbox answers each accepted send only after the
/// message's statuses have been posted to the api, and 300 ms more.
async fn gateway_with_early_statuses() -> TestGateway {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..GatewayOptions::default()
    })
    .await;
    // sent at 10 ms, delivered at 100 ms and read at 300 ms all come due
    // before the answer, which follows the `sent` POST by 300 ms: the
    // sandbox posts each of them before it answers.
    gateway.sandbox.set_statuses(StatusConfig {
        answer_after_status_ms: ANSWER_AFTER_STATUS_MS,
        ..StatusConfig::default()
    });
    gateway
}

/// Panics at once if the worker gave up on a status that came before its
/// record (it would otherwise only show as a timeout).
fn assert_nothing_given_up(gateway: &TestGateway) {
    let given_up: f64 = gateway
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("gateway_webhook_events_total{kind=\"given_up\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        given_up == 0.0,
        "the worker dropped {given_up} statuses that came before their records"
    );
}

/// Waits until every message's record satisfies `done`; returns the records.
async fn wait_for_records(
    gateway: &TestGateway,
    ids: &[String],
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> HashMap<String, Value> {
    let records = Mutex::new(HashMap::new());
    wait_until_every(
        &format!("every message to be {what}"),
        DEADLINE,
        POLL,
        || async {
            assert_nothing_given_up(gateway);
            let pending: Vec<&String> = {
                let records = records.lock().expect("lock");
                ids.iter().filter(|id| !records.contains_key(*id)).collect()
            };
            for id in pending {
                let (code, record) = gateway.message(id).await;
                if code == 200 && done(&record) {
                    records.lock().expect("lock").insert(id.clone(), record);
                }
            }
            (records.lock().expect("lock").len() == ids.len()).then_some(())
        },
    )
    .await;
    records.into_inner().expect("lock")
}

/// The statuses Meta reported, as the record's history shows them.
fn meta_statuses(record: &Value) -> Vec<&str> {
    record["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["source"] == "meta")
        .filter_map(|e| e["status"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_reported_before_the_answer_fail_the_messages_into_the_dead_letters() {
    let gateway = gateway_with_early_statuses().await;
    let users: Vec<String> = (0..MESSAGES).map(phone).collect();
    gateway.sandbox.set_users(
        users
            .iter()
            .map(|user| UserConfig {
                id: user.clone(),
                not_on_whatsapp: true,
                ..UserConfig::default()
            })
            .collect(),
    );
    let callbacks = SignedReceiver::default();
    let callback_url = callbacks.start(KEY_ALL).await;
    let messages: Vec<Value> = users
        .iter()
        .map(|user| template_to(user, Some(&callback_url)))
        .collect();
    let ids = gateway.send_all(&messages).await;

    let records = wait_for_records(&gateway, &ids, "failed", |r| r["status"] == "failed").await;
    for id in &ids {
        let record = &records[id];
        assert_eq!(record["error"]["code"], 131026, "{record}");
        assert_eq!(meta_statuses(record), ["failed"], "{record}");
    }
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.accepted, MESSAGES as u64, "each sent once: {stats:?}");
    assert_eq!(
        stats.failed_statuses.get(&131_026),
        Some(&(MESSAGES as u64)),
        "{stats:?}"
    );

    // In the dead letters, over the API and from the command line.
    let (code, dead) = gateway
        .get("/dead-letters", &[("code", "131026"), ("limit", "1000")])
        .await;
    assert_eq!(code, 200, "{dead}");
    let dead_ids: HashSet<&str> = dead["dead_letters"]
        .as_array()
        .expect("dead letters")
        .iter()
        .filter(|l| l["code"] == 131026)
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(dead_ids, ids.iter().map(String::as_str).collect(), "{dead}");
    let (ok, out) = gateway.command(BINARY, &["dlq", "list", "--json", "--code", "131026"]);
    assert!(ok, "{out}");
    for id in &ids {
        assert!(out.contains(id.as_str()), "{id} missing from: {out}");
    }

    // Each callback_url heard of its message's failure, signed.
    let failed = wait_until_every(
        "the failed status at every callback_url",
        DEADLINE,
        POLL,
        || async {
            let failed: HashMap<String, Value> = callbacks
                .bodies()
                .into_iter()
                .filter(|b| b["type"] == "status" && b["status"] == "failed")
                .filter_map(|b| Some((b["message_id"].as_str()?.to_owned(), b)))
                .collect();
            (failed.len() >= ids.len()).then_some(failed)
        },
    )
    .await;
    for id in &ids {
        let body = failed
            .get(id)
            .unwrap_or_else(|| panic!("no callback for {id}"));
        assert_eq!(body["error"]["code"], 131026, "{body}");
        assert_eq!(body["wamid"], records[id]["wamid"], "{body}");
    }
    assert_eq!(callbacks.forged(), 0);
    assert_nothing_given_up(&gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_delivered_and_read_reported_before_the_answer_all_reach_read() {
    let gateway = gateway_with_early_statuses().await;
    let messages: Vec<Value> = (0..MESSAGES)
        .map(|i| template_to(&phone(i), None))
        .collect();
    let ids = gateway.send_all(&messages).await;

    // Kept statuses are tried again one by one: `read` may be recorded
    // before `sent` is; wait for all three of Meta's.
    let records = wait_for_records(&gateway, &ids, "read", |r| {
        r["status"] == "read" && meta_statuses(r).len() >= 3
    })
    .await;
    for id in &ids {
        let record = &records[id];
        assert_eq!(record["status"], "read", "{record}");
        let mut meta = meta_statuses(record);
        meta.sort_unstable();
        assert_eq!(
            meta,
            ["delivered", "read", "sent"],
            "each of Meta's statuses once: {record}"
        );
        assert!(record["error"].is_null(), "{record}");
    }
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.accepted, MESSAGES as u64, "each sent once: {stats:?}");
    assert_nothing_given_up(&gateway);
}
