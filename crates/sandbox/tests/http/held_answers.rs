//! `StatusConfig::answer_after_status_ms`: the answer to an accepted send
//! held back until its first status webhook has reached the receiver, and
//! that long more, so that status webhooks outrun the answer on purpose.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use gateway_sandbox::{SandboxConfig, StatusConfig, UserConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const HOLD: Duration = Duration::from_millis(300);

fn held(config: &mut SandboxConfig) {
    config.statuses = StatusConfig {
        answer_after_status_ms: 300,
        ..StatusConfig::default()
    };
}

async fn start_with(
    receiver: &Receiver,
    configure: impl FnOnce(&mut SandboxConfig),
) -> TestSandbox {
    let mut config = config();
    config.webhook = Some(receiver.target());
    configure(&mut config);
    TestSandbox::start(config).await
}

/// Sends `body`, expecting a 200; returns the wamid, when the answer came
/// and how long the send took.
async fn send_timed(sandbox: &TestSandbox, body: &Value) -> (String, Instant, Duration) {
    let started = Instant::now();
    let (status, answer) = sandbox.send(body).await;
    let answered = Instant::now();
    assert_eq!(status, StatusCode::OK, "{answer}");
    let wamid = answer["messages"][0]["id"]
        .as_str()
        .expect("a wamid")
        .to_owned();
    (wamid, answered, answered - started)
}

/// The statuses of `wamid` the receiver has now, with when each POST came
/// and how it was answered.
fn arrived(receiver: &Receiver, wamid: &str) -> Vec<(String, Instant, StatusCode)> {
    receiver
        .received()
        .iter()
        .flat_map(|post| {
            let body = post.json();
            body["entry"][0]["changes"][0]["value"]["statuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s["id"] == wamid)
                .map(|s| {
                    let kind = s["status"].as_str().unwrap_or_default().to_owned();
                    (kind, post.at, post.answered)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn kinds(arrived: &[(String, Instant, StatusCode)]) -> Vec<&str> {
    arrived.iter().map(|(kind, _, _)| kind.as_str()).collect()
}

#[tokio::test]
async fn the_sent_webhook_reaches_the_receiver_before_the_answer() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, held).await;
    let (wamid, answered, _) = send_timed(&sandbox, &template(USER, "hello_world", &[])).await;

    // Looked at once, without waiting: the answer came after them.
    let before = arrived(&receiver, &wamid);
    let (kind, sent_at, _) = before.first().expect("a status before the answer");
    assert_eq!(kind, "sent", "{before:?}");
    assert!(
        answered.duration_since(*sent_at) >= HOLD,
        "the answer came {:?} after the sent webhook",
        answered.duration_since(*sent_at)
    );
    // `delivered` (100 ms) and `read` (300 ms) came due within the hold:
    // the answer does not overtake them either.
    assert_eq!(kinds(&before), ["sent", "delivered", "read"]);
    assert!(before.iter().all(|(_, at, _)| *at < answered));
}

#[tokio::test]
async fn a_failed_status_for_a_user_not_on_whatsapp_comes_before_the_answer() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |_| {}).await;
    // Both set at run time, over the admin routes.
    let (status, users) = sandbox
        .admin(
            Method::PUT,
            "users",
            Some(json!([{"id": USER, "not_on_whatsapp": true}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let (status, statuses) = sandbox
        .admin(
            Method::PUT,
            "statuses",
            Some(json!({"answer_after_status_ms": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{statuses}");

    let mut body = template(USER, "hello_world", &[]);
    body["biz_opaque_callback_data"] = json!("message-1");
    let (wamid, answered, _) = send_timed(&sandbox, &body).await;
    let failed: Vec<Value> = receiver
        .statuses()
        .into_iter()
        .filter(|s| s["id"] == wamid.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "only the failed status: {failed:?}");
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(failed[0]["errors"][0]["code"], 131026);
    assert_eq!(failed[0]["biz_opaque_callback_data"], "message-1");
    let (_, failed_at, _) = arrived(&receiver, &wamid)[0];
    assert!(answered.duration_since(failed_at) >= HOLD);
}

#[tokio::test]
async fn concurrent_batched_sends_each_wait_for_their_own_status() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        config.statuses = StatusConfig {
            sent_ms: 0,
            read_rate: 0.0,
            drop_delivered_rate: 1.0,
            batch: 10,
            answer_after_status_ms: 100,
            ..StatusConfig::default()
        };
    })
    .await;
    let sends: Vec<_> = (0..30)
        .map(|i| {
            let client = sandbox.client.clone();
            let url = format!("{}/v25.0/{NUMBER}/messages", sandbox.base);
            let body = template(&format!("+165055520{i:02}"), "hello_world", &[]);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("an answer");
                let answered = Instant::now();
                let answer: Value = response.json().await.expect("JSON");
                let wamid = answer["messages"][0]["id"]
                    .as_str()
                    .expect("a wamid")
                    .to_owned();
                (wamid, answered)
            })
        })
        .collect();
    for send in sends {
        let (wamid, answered) = send.await.expect("the send task");
        let before = arrived(&receiver, &wamid);
        let (kind, sent_at, _) = before.first().expect("its sent webhook");
        assert_eq!(kind, "sent");
        assert!(answered.duration_since(*sent_at) >= Duration::from_millis(100));
    }
}

#[tokio::test]
async fn a_receiver_answering_500_releases_the_answer_and_gets_the_retry_later() {
    let receiver = Receiver::start(1).await;
    let sandbox = start_with(&receiver, |config| {
        config.statuses = StatusConfig {
            read_rate: 0.0,
            drop_delivered_rate: 1.0,
            answer_after_status_ms: 50,
            ..StatusConfig::default()
        };
        if let Some(target) = &mut config.webhook {
            // The retry comes well after the answer.
            target.retry_initial_ms = 1_000;
        }
    })
    .await;
    let (wamid, answered, _) = send_timed(&sandbox, &template(USER, "hello_world", &[])).await;
    let before = arrived(&receiver, &wamid);
    assert_eq!(
        before
            .iter()
            .map(|(kind, _, answered)| (kind.as_str(), *answered))
            .collect::<Vec<_>>(),
        [("sent", StatusCode::INTERNAL_SERVER_ERROR)],
        "the attempt counts, whatever the receiver answered"
    );
    assert!(before[0].1 < answered);
    receiver.wait_for_statuses(&wamid, &["sent"]).await;
}

#[tokio::test]
async fn without_the_option_or_a_live_target_the_answer_does_not_wait() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        config.statuses = StatusConfig {
            sent_ms: 2_000,
            ..StatusConfig::default()
        };
    })
    .await;
    let (wamid, _, took) = send_timed(&sandbox, &template(USER, "hello_world", &[])).await;
    assert!(
        arrived(&receiver, &wamid).is_empty(),
        "answered before its statuses"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A target nothing listens on: the attempt fails at once and the answer goes.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhook", closed.local_addr().expect("address"));
    drop(closed);
    let mut target = gateway_sandbox::WebhookTarget::new(url, APP_SECRET);
    target.max_attempts = 1;
    sandbox.sandbox.set_webhook(Some(target));
    sandbox.sandbox.set_statuses(StatusConfig {
        answer_after_status_ms: 100,
        ..StatusConfig::default()
    });
    let (_, _, took) = send_timed(&sandbox, &template(USER, "hello_world", &[])).await;
    assert!(
        (Duration::from_millis(100)..Duration::from_secs(5)).contains(&took),
        "took {took:?}"
    );
}

#[tokio::test]
async fn the_option_and_the_users_are_read_and_set_strictly_over_admin() {
    let sandbox = TestSandbox::start(config()).await;
    let (status, statuses) = sandbox.admin(Method::GET, "statuses", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statuses["answer_after_status_ms"], 0, "off by default");

    let (status, statuses) = sandbox
        .admin(
            Method::PUT,
            "statuses",
            Some(json!({"answer_after_status_ms": 250, "sent_ms": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statuses["answer_after_status_ms"], 250);
    assert_eq!(sandbox.sandbox.statuses().answer_after_status_ms, 250);
    assert_eq!(sandbox.sandbox.statuses().read_ms, 300, "the rest defaults");

    for bad in [
        json!({"answer_after_status": 250}),
        json!({"answer_after_status_ms": -1}),
        json!({"answer_after_status_ms": "250"}),
    ] {
        let (status, answer) = sandbox.admin(Method::PUT, "statuses", Some(bad)).await;
        assert!(status.is_client_error(), "{answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    assert_eq!(sandbox.sandbox.statuses().answer_after_status_ms, 250);

    let (status, users) = sandbox
        .admin(
            Method::PUT,
            "users",
            Some(json!([{"id": "+16505550002", "marketing_capped": true},
                        {"id": "16505550001", "not_on_whatsapp": true}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users[0]["id"], "+16505550002", "ordered by id as written");
    assert_eq!(users[1]["not_on_whatsapp"], true);
    let (_, listed) = sandbox.admin(Method::GET, "users", None).await;
    assert_eq!(listed, users);
    let (status, _) = sandbox
        .admin(
            Method::PUT,
            "users",
            Some(json!([{"id": "1", "not_on_whats_app": true}])),
        )
        .await;
    assert!(status.is_client_error(), "unknown keys are refused");
    assert_eq!(sandbox.sandbox.users().len(), 2);
    sandbox.sandbox.set_users(vec![UserConfig::default()]);
    assert_eq!(sandbox.sandbox.users().len(), 1);
}

#[tokio::test]
async fn stopping_the_sandbox_releases_an_answer_held_for_a_status_not_yet_due() {
    let receiver = Receiver::start(0).await;
    let sandbox = start_with(&receiver, |config| {
        config.statuses = StatusConfig {
            sent_ms: 60_000,
            answer_after_status_ms: 10,
            ..StatusConfig::default()
        };
    })
    .await;
    let client = sandbox.client.clone();
    let url = format!("{}/v25.0/{NUMBER}/messages", sandbox.base);
    let send = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(TOKEN)
            .json(&template(USER, "hello_world", &[]))
            .send()
            .await
            .map(|response| response.status())
    });
    wait_for("the send to be accepted and held", || {
        Some(()).filter(|()| sandbox.sandbox.stats().accepted == 1)
    })
    .await;
    assert!(!send.is_finished(), "held for a status due in a minute");
    let stopped = Instant::now();
    drop(sandbox);
    let answer = tokio::time::timeout(Duration::from_secs(5), send)
        .await
        .expect("answered soon after the stop")
        .expect("the send task");
    assert_eq!(answer.ok(), Some(reqwest::StatusCode::OK));
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(receiver.statuses().is_empty(), "the status was abandoned");
}
