//! What arrives on `/webhook` from outside: refused without effect when it
//! is not Meta's (signature) or not a webhook (body), acknowledged without
//! effect when it is another product's (`page`, `instagram`) or about
//! numbers this gateway does not serve, acted on
//! once when it is a real status, even one Meta repeats, and refused with
//! 503 while the events stream is full (no worker draining it).

use std::time::Duration;

use gateway_tests::{
    APP_SECRET, GatewayOptions, KEY_ALL, TestGateway, VERIFY_TOKEN, phone_number_id, wait_until,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

fn sign(secret: &str, body: &[u8]) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("any key length")
        .chain_update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST /webhook` of `body` with this `X-Hub-Signature-256` (if any).
fn webhook_request(
    gateway: &TestGateway,
    body: &[u8],
    signature: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = gateway
        .http
        .post(format!("{}/webhook", gateway.api_url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    match signature {
        Some(signature) => request.header("x-hub-signature-256", signature),
        None => request,
    }
}

/// Posts `body` to `/webhook` with this `X-Hub-Signature-256` (if any).
async fn post_webhook(gateway: &TestGateway, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let response = webhook_request(gateway, body, signature)
        .send()
        .await
        .expect("api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn envelope(pnid: &str, value: Value) -> Vec<u8> {
    let mut value = value;
    value["metadata"] = json!({"display_phone_number": "15550001111", "phone_number_id": pnid});
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "2000", "changes": [{"field": "messages", "value": value}]}]})
    .to_string()
    .into_bytes()
}

fn status(pnid: &str, wamid: &str, status: &str, error: Option<(i64, &str)>) -> Vec<u8> {
    let mut item = json!({"id": wamid, "status": status, "timestamp": "1767225600",
                          "recipient_id": "16505551234", "a_field_meta_added_later": {"x": 1}});
    if let Some((code, title)) = error {
        item["errors"] = json!([{"code": code, "title": title}]);
    }
    envelope(
        pnid,
        json!({"messaging_product": "whatsapp", "statuses": [item]}),
    )
}

/// An inbound text from user `n` (`+1650555000n`), sent now.
fn inbound(pnid: &str, n: u32) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    envelope(
        pnid,
        json!({"messaging_product": "whatsapp", "messages": [{
            "from": format!("1650555{n:04}"), "id": format!("wamid.IN{n}"),
            "timestamp": now.to_string(), "type": "text", "text": {"body": "hi"}}]}),
    )
}

async fn events_len(gateway: &TestGateway) -> u64 {
    redis::cmd("XLEN")
        .arg(gateway_queue::keys::EVENTS)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("XLEN")
}

fn refused_for_backlog(gateway: &TestGateway) -> u64 {
    gateway
        .metrics
        .webhooks_refused
        .with_label_values(&["backlog"])
        .get()
}

async fn key_count(gateway: &TestGateway) -> i64 {
    redis::cmd("DBSIZE")
        .query_async(&mut gateway.redis().await)
        .await
        .expect("dbsize")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_webhooks_change_nothing() {
    // No worker: anything stored would stay in Redis to be counted.
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..GatewayOptions::default()
    })
    .await;
    let pnid = phone_number_id(0);
    let good = status(&pnid, "wamid.A", "delivered", None);
    let earlier = status(&pnid, "wamid.B", "read", None);
    let huge = {
        let mut body = envelope(&pnid, json!({"statuses": []}));
        body.extend(std::iter::repeat_n(b' ', 3 * 1024 * 1024));
        body
    };
    let cases: Vec<(&str, Vec<u8>, Option<String>, u16)> = vec![
        ("no signature", good.clone(), None, 401),
        (
            "signed with another secret",
            good.clone(),
            Some(sign("not-the-app-secret", &good)),
            401,
        ),
        // A signature replayed from an earlier body.
        (
            "stale signature",
            good.clone(),
            Some(sign(APP_SECRET, &earlier)),
            401,
        ),
        ("not hex", good.clone(), Some("sha256=zzzz".into()), 401),
        (
            "another scheme",
            good.clone(),
            Some(format!("sha1={}", &sign(APP_SECRET, &good)[7..])),
            401,
        ),
        (
            "malformed JSON",
            b"{\"object\": ".to_vec(),
            Some(sign(APP_SECRET, b"{\"object\": ")),
            400,
        ),
        (
            "not shaped like a WhatsApp webhook",
            br#"{"object":"whatsapp_business_account","entry":"x"}"#.to_vec(),
            Some(sign(
                APP_SECRET,
                br#"{"object":"whatsapp_business_account","entry":"x"}"#,
            )),
            400,
        ),
        (
            "huge body",
            huge.clone(),
            Some(sign(APP_SECRET, &huge)),
            413,
        ),
    ];
    for (name, body, signature, expected) in cases {
        let (code, answer) = post_webhook(&gateway, &body, signature.as_deref()).await;
        assert_eq!(code, expected, "{name}: {answer}");
        if expected == 401 {
            assert_eq!(answer["error"]["code"], "invalid_signature", "{name}");
        }
    }
    assert_eq!(
        key_count(&gateway).await,
        0,
        "refused webhooks stored nothing"
    );

    // Signed, but for another of Meta's products: acknowledged (Meta would
    // retry a 400 for days), not stored, counted.
    for other in [
        br#"{"object":"page","entry":[]}"#.to_vec(),
        br#"{"object":"instagram","entry":[{"id":"1","time":1,"changes":[{"field":"comments","value":{"text":"hi"}}]}]}"#.to_vec(),
        br#"{"object":"page","entry":[{"messaging":"not WhatsApp's shape"}]}"#.to_vec(),
    ] {
        let (code, answer) = post_webhook(&gateway, &other, Some(&sign(APP_SECRET, &other))).await;
        assert_eq!(code, 200, "{}: {answer}", String::from_utf8_lossy(&other));
    }
    assert_eq!(
        key_count(&gateway).await,
        0,
        "another product's webhooks stored nothing"
    );
    assert!(
        gateway
            .metrics
            .render()
            .contains("gateway_webhook_events_total{kind=\"not_whatsapp\"} 3"),
        "counted"
    );

    // Signed, but about a number this gateway does not serve: acknowledged, not stored.
    let foreign = status("999999999", "wamid.C", "read", None);
    let (code, _) = post_webhook(&gateway, &foreign, Some(&sign(APP_SECRET, &foreign))).await;
    assert_eq!(code, 200);
    assert_eq!(
        key_count(&gateway).await,
        0,
        "a foreign number's event stored nothing"
    );

    // Signed and ours, with fields Meta may add: stored for the workers.
    let (code, _) = post_webhook(&gateway, &good, Some(&sign(APP_SECRET, &good))).await;
    assert_eq!(code, 200);
    let stored: u64 = redis::cmd("XLEN")
        .arg("gw:events")
        .query_async(&mut gateway.redis().await)
        .await
        .expect("xlen");
    assert_eq!(stored, 1);

    let metrics = gateway.metrics.render();
    assert!(
        metrics.contains("gateway_webhook_signature_failures_total{reason=\"missing\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_handshake_answers_the_challenge_only_to_the_right_token() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..GatewayOptions::default()
    })
    .await;
    let handshake = |token: &str, mode: &str| {
        gateway
            .http
            .get(format!("{}/webhook", gateway.api_url))
            .query(&[
                ("hub.mode", mode),
                ("hub.challenge", "1158201444"),
                ("hub.verify_token", token),
            ])
            .send()
    };
    let right = handshake(VERIFY_TOKEN, "subscribe").await.expect("answers");
    assert_eq!(right.status().as_u16(), 200);
    assert_eq!(right.text().await.expect("body"), "1158201444");
    for (token, mode) in [
        ("wrong", "subscribe"),
        (VERIFY_TOKEN, "unsubscribe"),
        ("", "subscribe"),
    ] {
        let answer = handshake(token, mode).await.expect("answers");
        assert_eq!(answer.status().as_u16(), 403, "{token} {mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_events_backlog_refuses_webhooks_until_a_worker_drains_it() {
    // No worker: nothing takes events off the stream.
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        extra_toml: "[webhook]\nmax_backlog = 5\n".into(),
        ..GatewayOptions::default()
    })
    .await;
    let pnid = phone_number_id(0);
    for n in 1..=5 {
        let body = inbound(&pnid, n);
        let (code, answer) = post_webhook(&gateway, &body, Some(&sign(APP_SECRET, &body))).await;
        assert_eq!(code, 200, "webhook {n}: {answer}");
    }
    assert_eq!(events_len(&gateway).await, 5);
    assert_eq!(refused_for_backlog(&gateway), 0);

    // The sixth finds the stream full: 503, Retry-After, nothing stored.
    let sixth = inbound(&pnid, 6);
    let signature = sign(APP_SECRET, &sixth);
    for attempt in 1..=2 {
        let response = webhook_request(&gateway, &sixth, Some(&signature))
            .send()
            .await
            .expect("api answers");
        assert_eq!(response.status().as_u16(), 503, "attempt {attempt}");
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(retry_after.is_some_and(|s| s > 0), "{retry_after:?}");
        let answer: Value = response.json().await.expect("a JSON error");
        assert_eq!(answer["error"]["code"], "backlog_full", "{answer}");
    }
    assert_eq!(
        events_len(&gateway).await,
        5,
        "a refused webhook is not stored"
    );
    assert_eq!(refused_for_backlog(&gateway), 2);
    let metrics = gateway.metrics.render();
    assert!(
        metrics.contains("gateway_webhooks_refused_total{reason=\"backlog\"} 2"),
        "{metrics}"
    );

    // A worker drains the stream; Meta's next try of the sixth is taken
    // and acted on (the user's window opens).
    gateway.start_worker().await;
    wait_until(
        "the worker to drain the events",
        Duration::from_secs(30),
        || async { (events_len(&gateway).await == 0).then_some(()) },
    )
    .await;
    let (code, answer) = post_webhook(&gateway, &sixth, Some(&signature)).await;
    assert_eq!(code, 200, "{answer}");
    let window = gateway_queue::keys::window(&pnid, "+16505550006");
    wait_until(
        "the sixth user's window",
        Duration::from_secs(30),
        || async {
            let open: bool = redis::cmd("EXISTS")
                .arg(&window)
                .query_async(&mut gateway.redis().await)
                .await
                .ok()?;
            open.then_some(())
        },
    )
    .await;
    assert_eq!(refused_for_backlog(&gateway), 2);
}

/// Sends one template and waits until it is sent; returns its id and wamid.
async fn one_sent(gateway: &TestGateway) -> (String, String) {
    let ids = gateway
        .send_all(&[
            json!({"from": "s0", "to": "+16505551234", "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
        ])
        .await;
    let record = gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(20))
        .await;
    let wamid = record["wamid"].as_str().expect("wamid").to_owned();
    (ids[0].clone(), wamid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_reported_by_webhook_is_retried_once_however_often_it_arrives() {
    let gateway = TestGateway::start(GatewayOptions::default()).await;
    let pnid = phone_number_id(0);
    let (id, first_wamid) = one_sent(&gateway).await;
    let failed = status(
        &pnid,
        &first_wamid,
        "failed",
        Some((131000, "Something went wrong")),
    );
    let signature = sign(APP_SECRET, &failed);
    for _ in 0..2 {
        let (code, _) = post_webhook(&gateway, &failed, Some(&signature)).await;
        assert_eq!(code, 200);
    }
    let record = wait_until(
        "the message to be sent again",
        Duration::from_secs(30),
        || async {
            let (_, record) = gateway.message(&id).await;
            (record["status"] == "sent" && record["wamid"] != first_wamid.as_str())
                .then_some(record)
        },
    )
    .await;
    assert_eq!(record["attempts"], 2, "{record}");
    let failures = record["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|e| e["status"] == "failed")
        .count();
    assert_eq!(failures, 1, "the repeated event counted once: {record}");
    assert_eq!(gateway.sandbox.accepted().len(), 2, "sent exactly twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_reported_by_webhook_fails_the_message_into_the_dead_letters() {
    let gateway = TestGateway::start(GatewayOptions::default()).await;
    let pnid = phone_number_id(0);
    let (id, wamid) = one_sent(&gateway).await;
    // A late `delivered` from before must not hide the failure; the failure is final.
    let failed = status(
        &pnid,
        &wamid,
        "failed",
        Some((131026, "Message undeliverable")),
    );
    let (code, _) = post_webhook(&gateway, &failed, Some(&sign(APP_SECRET, &failed))).await;
    assert_eq!(code, 200);
    let record = gateway
        .wait_for_status(&id, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(record["error"]["code"], 131026, "{record}");
    let late = status(&pnid, &wamid, "sent", None);
    let (code, _) = post_webhook(&gateway, &late, Some(&sign(APP_SECRET, &late))).await;
    assert_eq!(code, 200);
    let dead: Value = gateway
        .http
        .get(format!("{}/dead-letters", gateway.api_url))
        .bearer_auth(KEY_ALL)
        .send()
        .await
        .expect("api answers")
        .json()
        .await
        .expect("json");
    let letters = dead["dead_letters"].as_array().expect("dead letters");
    assert!(
        letters
            .iter()
            .any(|l| l["id"] == id.as_str() && l["code"] == 131026),
        "{dead}"
    );
    // The late `sent` is history only: the status stays failed.
    wait_until(
        "the late event to be processed",
        Duration::from_secs(10),
        || async {
            let (_, record) = gateway.message(&id).await;
            let events = record["history"].as_array()?.len();
            (events >= 4).then_some(())
        },
    )
    .await;
    let (_, record) = gateway.message(&id).await;
    assert_eq!(record["status"], "failed", "{record}");
}
