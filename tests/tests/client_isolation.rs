//! Clients are kept apart (guarantee 9): a client reads and replays only the
//! messages it sent itself, also on a sender it shares with another client;
//! anyone else's message is answered exactly like one that does not exist,
//! and replaying it does nothing. A client configured `admin = true` sees
//! and replays every client's, on every sender; `gateway dlq` (the
//! operator's view) lists everyone's.
//!
//! Client "all" (`KEY_ALL`) may use s0 and s1, client "one" (`KEY_ONE`) only
//! s0; client "ops" is an admin with no sender of its own.

use std::time::Duration;

use gateway_tests::{GatewayOptions, KEY_ALL, KEY_ONE, TestGateway, wait_until};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const KEY_ADMIN: &str = "test-key-admin";

fn options() -> GatewayOptions {
    GatewayOptions {
        senders: 2,
        // No fallback anywhere: a text to a closed window fails unsent
        // (131047, `window_closed`) into the dead letters.
        sender_fallback: false,
        extra_toml:
            "[[clients]]\nname = \"ops\"\nkey_env = \"KEY_ADMIN\"\nsenders = []\nadmin = true\n"
                .into(),
        extra_env: vec![("KEY_ADMIN".into(), KEY_ADMIN.into())],
        ..GatewayOptions::default()
    }
}

fn template(from: &str, to: &str) -> Value {
    json!({"from": from, "to": to, "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

/// A text to a recipient who never wrote: fails for good, unsent.
fn doomed_text(from: &str, to: &str) -> Value {
    json!({"from": from, "to": to, "type": "text", "text": {"body": "Your order shipped"}})
}

async fn send_as(gateway: &TestGateway, key: &str, body: &Value) -> String {
    let (status, answer) = gateway
        .post("/send", Some(key), body.to_string().into_bytes())
        .await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("id").to_owned()
}

async fn get_as(
    gateway: &TestGateway,
    key: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let response = gateway
        .http
        .get(format!("{}{path}", gateway.api_url))
        .query(query)
        .bearer_auth(key)
        .send()
        .await
        .expect("api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn replay_as(gateway: &TestGateway, key: &str, body: Value) -> (u16, Value) {
    gateway
        .post(
            "/dead-letters/replay",
            Some(key),
            body.to_string().into_bytes(),
        )
        .await
}

/// The ids of the dead letters `key` is shown.
async fn dead_letter_ids(gateway: &TestGateway, key: &str, query: &[(&str, &str)]) -> Vec<String> {
    let (status, answer) = get_as(gateway, key, "/dead-letters", query).await;
    assert_eq!(status, 200, "{answer}");
    let mut ids: Vec<String> = answer["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

fn replayed_from_dead_letters(record: &Value) -> bool {
    record["history"]
        .as_array()
        .expect("history")
        .iter()
        .any(|e| e["detail"] == "replayed from the dead letters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_and_replays_only_its_own_messages_unless_it_is_an_admin() {
    let gateway = TestGateway::start(options()).await;

    // Client "all" sends on s0, which it shares with client "one", and on s1.
    let all_sent = send_as(&gateway, KEY_ALL, &template("s0", "+16505550001")).await;
    let all_dead_s0 = send_as(&gateway, KEY_ALL, &doomed_text("s0", "+16505550002")).await;
    let all_dead_s1 = send_as(&gateway, KEY_ALL, &doomed_text("s1", "+16505550003")).await;
    // Client "one" sends on s0 too.
    let one_sent = send_as(&gateway, KEY_ONE, &template("s0", "+16505550004")).await;

    let deadline = Duration::from_secs(30);
    let all_sent_record = gateway.wait_for_status(&all_sent, "sent", deadline).await;
    let wamid = all_sent_record["wamid"].as_str().expect("wamid").to_owned();
    gateway
        .wait_for_status(&all_dead_s0, "failed", deadline)
        .await;
    gateway
        .wait_for_status(&all_dead_s1, "failed", deadline)
        .await;
    // (`wait_for_status` reads as "all", which may not see it.)
    let one_sent_record = wait_until("client one's message to be sent", deadline, || async {
        let (status, record) =
            get_as(&gateway, KEY_ONE, &format!("/messages/{one_sent}"), &[]).await;
        (status == 200 && record["status"] == "sent").then_some(record)
    })
    .await;
    let one_wamid = one_sent_record["wamid"].as_str().expect("wamid").to_owned();

    // Another client's message is answered exactly like an unknown one.
    let (status, unknown) = get_as(
        &gateway,
        KEY_ONE,
        "/messages/1000000000-1700000000000-0",
        &[],
    )
    .await;
    assert_eq!(status, 404, "{unknown}");
    for id in [&all_sent, &all_dead_s0, &all_dead_s1] {
        let (status, answer) = get_as(&gateway, KEY_ONE, &format!("/messages/{id}"), &[]).await;
        assert_eq!((status, &answer), (404, &unknown), "{id}");
    }
    let (status, unknown_wamid) =
        get_as(&gateway, KEY_ONE, "/messages", &[("wamid", "wamid.NOPE")]).await;
    assert_eq!(status, 404, "{unknown_wamid}");
    let (status, answer) = get_as(&gateway, KEY_ONE, "/messages", &[("wamid", &wamid)]).await;
    assert_eq!((status, &answer), (404, &unknown_wamid));
    // Both ways: "all" may use s0 too, yet does not see "one"'s message.
    let (status, _) = get_as(&gateway, KEY_ALL, &format!("/messages/{one_sent}"), &[]).await;
    assert_eq!(status, 404);
    let (status, _) = get_as(&gateway, KEY_ALL, "/messages", &[("wamid", &one_wamid)]).await;
    assert_eq!(status, 404);
    // Its own, it sees.
    let (status, own) = get_as(&gateway, KEY_ONE, &format!("/messages/{one_sent}"), &[]).await;
    assert_eq!((status, own["id"].as_str()), (200, Some(one_sent.as_str())));
    let (status, own) = get_as(&gateway, KEY_ONE, "/messages", &[("wamid", &one_wamid)]).await;
    assert_eq!((status, own["id"].as_str()), (200, Some(one_sent.as_str())));

    // Dead letters: "one" sees none of "all"'s, on the sender they share.
    assert!(dead_letter_ids(&gateway, KEY_ONE, &[]).await.is_empty());
    assert!(
        dead_letter_ids(&gateway, KEY_ONE, &[("from", "s0")])
            .await
            .is_empty()
    );
    let mut all_dead = vec![all_dead_s0.clone(), all_dead_s1.clone()];
    all_dead.sort();
    assert_eq!(dead_letter_ids(&gateway, KEY_ALL, &[]).await, all_dead);

    // ... and cannot replay them, by id or all at once.
    for body in [
        json!({"ids": [all_dead_s0]}),
        json!({"from": "s0", "ids": [all_dead_s0]}),
        json!({"code": 131047}),
        json!({}),
    ] {
        let (status, answer) = replay_as(&gateway, KEY_ONE, body.clone()).await;
        assert_eq!((status, &answer["replayed"]), (200, &json!(0)), "{body}");
    }
    assert_eq!(dead_letter_ids(&gateway, KEY_ALL, &[]).await, all_dead);
    let (_, record) = gateway.message(&all_dead_s0).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert!(!replayed_from_dead_letters(&record), "{record}");

    // The admin, allowed no sender of its own, sees every client's messages.
    for id in [&all_sent, &one_sent, &all_dead_s1] {
        let (status, answer) = get_as(&gateway, KEY_ADMIN, &format!("/messages/{id}"), &[]).await;
        assert_eq!((status, answer["id"].as_str()), (200, Some(id.as_str())));
    }
    let (status, answer) = get_as(&gateway, KEY_ADMIN, "/messages", &[("wamid", &wamid)]).await;
    assert_eq!(
        (status, answer["id"].as_str()),
        (200, Some(all_sent.as_str()))
    );
    assert_eq!(dead_letter_ids(&gateway, KEY_ADMIN, &[]).await, all_dead);
    assert_eq!(
        dead_letter_ids(&gateway, KEY_ADMIN, &[("from", "s1")]).await,
        vec![all_dead_s1.clone()]
    );
    let (_, listed) = get_as(&gateway, KEY_ADMIN, "/dead-letters", &[]).await;
    for letter in listed["dead_letters"].as_array().expect("dead_letters") {
        assert_eq!(letter["client"], "all", "{letter}");
    }
    // The operator's view lists everyone's too.
    let (ok, out) = gateway.command(BINARY, &["dlq", "list", "--json"]);
    assert!(ok, "{out}");
    let listed: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(listed.len(), 2, "{out}");

    // The admin replays another client's dead letter, by id.
    let (status, answer) = replay_as(&gateway, KEY_ADMIN, json!({"ids": [all_dead_s0]})).await;
    assert_eq!((status, &answer["replayed"]), (200, &json!(1)), "{answer}");
    // The window is still closed: it fails again, replayed.
    let record = gateway
        .wait_for_status(&all_dead_s0, "failed", deadline)
        .await;
    assert!(replayed_from_dead_letters(&record), "{record}");
    // Its own sender's unfiltered replay by its own client works as before.
    let (status, answer) = replay_as(&gateway, KEY_ALL, json!({"from": "s1"})).await;
    assert_eq!((status, &answer["replayed"]), (200, &json!(1)), "{answer}");
}
