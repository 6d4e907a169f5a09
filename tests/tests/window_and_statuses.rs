//! The 24-hour window and Meta's status webhooks, end to end over real HTTP:
//! the sandbox posts signed webhooks to the api, workers process them, and
//! the gateway's choice of text or fallback template follows what it saw.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use gateway_sandbox::{FailureMode, Rules, StatusConfig};
use gateway_tests::{GatewayOptions, TestGateway, phone_number_id, wait_until};
use serde_json::{Value, json};

fn options() -> GatewayOptions {
    GatewayOptions {
        webhooks: true,
        ..GatewayOptions::default()
    }
}

fn phone(i: usize) -> String {
    format!("+1650555{i:04}")
}

fn text_to(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "text", "text": {"body": "Your order shipped"}})
}

/// Waits until the gateway has seen the inbound webhooks of these users.
async fn wait_for_windows(gateway: &TestGateway, users: &[String]) {
    let redis = gateway.redis().await;
    let pnid = phone_number_id(0);
    wait_until(
        "the gateway to see the inbound messages",
        Duration::from_secs(20),
        || {
            let keys: Vec<String> = users
                .iter()
                .map(|u| format!("gw:{{{pnid}}}:window:{u}"))
                .collect();
            let mut redis = redis.clone();
            async move {
                let open: i64 = redis::cmd("EXISTS")
                    .arg(&keys)
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                (usize::try_from(open).ok()? == keys.len()).then_some(())
            }
        },
    )
    .await;
}

/// Waits until every message is at least `sent` and returns the records.
async fn wait_sent(gateway: &TestGateway, ids: &[String]) -> Vec<Value> {
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        let record = wait_until(
            &format!("{id} to be sent"),
            Duration::from_secs(30),
            || async {
                let (_, record) = gateway.message(id).await;
                matches!(
                    record["status"].as_str(),
                    Some("sent" | "delivered" | "read")
                )
                .then_some(record)
            },
        )
        .await;
        records.push(record);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_windows_get_the_text_and_closed_ones_the_fallback_template() {
    let gateway = TestGateway::start(options()).await;
    let pnid = phone_number_id(0);
    let users: Vec<String> = (0..200).map(phone).collect();
    let (open, closed) = users.split_at(100);
    let day_and_an_hour_ago = SystemTime::now() - Duration::from_secs(25 * 3600);
    for user in open {
        gateway.sandbox.inbound(&pnid, user, "hi").expect("inbound");
    }
    // Half of the closed ones wrote, but more than 24 hours ago.
    for user in &closed[..50] {
        gateway
            .sandbox
            .inbound_at(&pnid, user, "hi", day_and_an_hour_ago)
            .expect("inbound");
    }
    wait_for_windows(&gateway, open).await;

    let messages: Vec<Value> = users.iter().map(|u| text_to(u)).collect();
    let ids = gateway.send_all(&messages).await;
    let records = wait_sent(&gateway, &ids).await;

    let sent_types: HashMap<String, String> = gateway
        .sandbox
        .accepted()
        .into_iter()
        .map(|m| (format!("+{}", m.recipient), m.message_type))
        .collect();
    for (user, record) in users.iter().zip(&records) {
        let window_open = open.contains(user);
        let expected = if window_open { "text" } else { "template" };
        assert_eq!(
            sent_types.get(user).map(String::as_str),
            Some(expected),
            "{user}"
        );
        assert_eq!(record["fallback_used"], !window_open, "{record}");
    }
    assert_eq!(
        gateway.sandbox.accepted().len(),
        200,
        "each message sent once"
    );
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.rejections.get(&131047), None, "{stats:?}");
    assert_eq!(stats.failed_statuses.get(&131047), None, "{stats:?}");
}

/// The sandbox closes a window the gateway believes open: Meta's 131047
/// (synchronous or as a failed status) ends with the fallback sent, once.
async fn window_closed_behind_our_back(failure: FailureMode) {
    let gateway = TestGateway::start(GatewayOptions {
        rules: Rules {
            window_failure: failure,
            ..Rules::default()
        },
        ..options()
    })
    .await;
    let pnid = phone_number_id(0);
    let user = phone(7);
    gateway
        .sandbox
        .inbound(&pnid, &user, "hi")
        .expect("inbound");
    wait_for_windows(&gateway, std::slice::from_ref(&user)).await;
    gateway.sandbox.close_window(&pnid, &user).expect("close");

    let ids = gateway.send_all(&[text_to(&user)]).await;
    let record = wait_until(
        "the fallback to be sent",
        Duration::from_secs(30),
        || async {
            let (_, record) = gateway.message(&ids[0]).await;
            (record["fallback_used"] == true
                && matches!(
                    record["status"].as_str(),
                    Some("sent" | "delivered" | "read")
                ))
            .then_some(record)
        },
    )
    .await;
    let templates = gateway
        .sandbox
        .accepted()
        .into_iter()
        .filter(|m| m.message_type == "template")
        .count();
    assert_eq!(templates, 1, "the fallback is sent once: {record}");
    let history = record["history"].as_array().expect("history");
    assert!(
        history.iter().any(|e| e["error_code"] == 131047),
        "{record}"
    );
    // The gateway now knows the window is closed: the next text goes as a template at once.
    let next = gateway.send_all(&[text_to(&user)]).await;
    let records = wait_sent(&gateway, &next).await;
    assert_eq!(records[0]["fallback_used"], true, "{}", records[0]);
    let stats = gateway.sandbox.stats();
    let window_errors = stats.rejections.get(&131047).copied().unwrap_or(0)
        + stats.failed_statuses.get(&131047).copied().unwrap_or(0);
    assert_eq!(window_errors, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_closed_behind_our_back_ends_with_the_fallback_sent_once() {
    window_closed_behind_our_back(FailureMode::Sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_131047_ends_with_the_fallback_sent_once() {
    window_closed_behind_our_back(FailureMode::Async).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_reach_the_record_in_order_even_reordered_and_duplicated() {
    let gateway = TestGateway::start(options()).await;
    gateway.sandbox.set_statuses(StatusConfig {
        reorder_rate: 0.5,
        duplicate_rate: 0.5,
        ..StatusConfig::default()
    });
    let template = |i: usize| {
        json!({"from": "s0", "to": phone(i), "type": "template",
               "template": {"name": "hello_world", "language": {"code": "en_US"}}})
    };
    let ids = gateway
        .send_all(&(0..40).map(template).collect::<Vec<_>>())
        .await;
    let meta_events = |record: &Value| {
        record["history"]
            .as_array()
            .map_or(0, |h| h.iter().filter(|e| e["source"] == "meta").count())
    };
    for id in &ids {
        // Reordered statuses come read first: wait for all three of Meta's.
        let record = wait_until(
            &format!("{id}: Meta's three statuses"),
            Duration::from_secs(30),
            || async {
                let (_, record) = gateway.message(id).await;
                (meta_events(&record) >= 3).then_some(record)
            },
        )
        .await;
        assert_eq!(record["status"], "read", "{record}");
        let meta: Vec<&str> = record["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| e["source"] == "meta")
            .filter_map(|e| e["status"].as_str())
            .collect();
        assert_eq!(
            meta,
            ["sent", "delivered", "read"],
            "each once, in order: {record}"
        );
        for event in record["history"].as_array().expect("history") {
            assert!(
                event["at"].as_str().is_some_and(|t| t.len() >= 20),
                "{event}"
            );
        }
    }
    // The wamid finds the message too.
    let (_, first) = gateway.message(&ids[0]).await;
    let wamid = first["wamid"].as_str().expect("wamid");
    let found: Value = gateway
        .http
        .get(format!("{}/messages", gateway.api_url))
        .query(&[("wamid", wamid)])
        .bearer_auth(gateway_tests::KEY_ALL)
        .send()
        .await
        .expect("api answers")
        .json()
        .await
        .expect("json");
    assert_eq!(found["id"], ids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_fallback_a_closed_window_fails_the_message_unsent() {
    let gateway = TestGateway::start(GatewayOptions {
        sender_fallback: false,
        ..options()
    })
    .await;
    let ids = gateway.send_all(&[text_to(&phone(1))]).await;
    let record = gateway
        .wait_for_status(&ids[0], "failed", Duration::from_secs(20))
        .await;
    let history = record["history"].as_array().expect("history");
    assert!(
        history.iter().any(|e| e["reason"] == "window_closed"),
        "{record}"
    );
    assert!(gateway.sandbox.accepted().is_empty(), "nothing was sent");
    // With its own fallback template the same message goes as that template.
    let mut with_fallback = text_to(&phone(1));
    with_fallback["fallback_template"] =
        json!({"name": "hello_world", "language": {"code": "en_US"}});
    let ids = gateway.send_all(&[with_fallback]).await;
    let records = wait_sent(&gateway, &ids).await;
    assert_eq!(records[0]["fallback_used"], true, "{}", records[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_known_only_by_their_bsuid_has_a_window_too() {
    let gateway = TestGateway::start(options()).await;
    let user = "US.13491208655302741918";
    gateway
        .sandbox
        .inbound(&phone_number_id(0), user, "hi")
        .expect("inbound");
    wait_for_windows(&gateway, &[user.to_owned()]).await;
    let message =
        json!({"from": "s0", "recipient": user, "type": "text", "text": {"body": "Welcome back"}});
    let ids = gateway.send_all(&[message]).await;
    let records = wait_sent(&gateway, &ids).await;
    assert_eq!(records[0]["fallback_used"], false, "{}", records[0]);
    let sent = gateway.sandbox.accepted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_type, "text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_asks_whether_a_window_is_open() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..Default::default()
    })
    .await;
    let writer = phone(901);
    gateway
        .sandbox
        .inbound(&phone_number_id(0), &writer, "hello")
        .expect("inbound");
    wait_for_windows(&gateway, std::slice::from_ref(&writer)).await;

    let (status, open) = gateway
        .get(
            &format!("/windows/{}", writer.replace('+', "%2B")),
            &[("from", "s0")],
        )
        .await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open["open"], true, "{open}");
    let until = time::OffsetDateTime::parse(
        open["until"].as_str().expect("until"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let left = until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(23) && left <= time::Duration::hours(24),
        "{open}"
    );

    let (status, closed) = gateway
        .get("/windows/%2B16505550902", &[("from", "s0")])
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["open"], false, "{closed}");
    assert_eq!(closed["until"], Value::Null, "{closed}");

    let (status, error) = gateway
        .get("/windows/%2B16505550902", &[("from", "nobody")])
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "from", "{error}");
    let (status, error) = gateway.get("/windows/not-a-number", &[]).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "recipient", "{error}");
}
