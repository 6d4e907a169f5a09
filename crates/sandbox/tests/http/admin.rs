//! The `/admin` routes, for tests that run the sandbox as another process.

use axum::http::StatusCode;
use gateway_sandbox::{AcceptedMessage, SandboxStats};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn rules_can_be_read_and_replaced() {
    let sandbox = TestSandbox::start(config()).await;
    let (status, rules) = sandbox.admin(Method::GET, "rules", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rules["window"], true);
    assert_eq!(rules["window_failure"], "sync");

    let (status, _) = sandbox
        .admin(Method::PUT, "rules", Some(json!({"window": false})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!sandbox.sandbox.rules().window);
    let (status, _) = sandbox.send(&text(USER, "no window needed now")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = sandbox
        .admin(Method::PUT, "rules", Some(json!({"windw": false})))
        .await;
    assert!(status.is_client_error(), "unknown keys are refused");
}

#[tokio::test]
async fn inbound_messages_list_stats_and_reset() {
    let sandbox = TestSandbox::start(config()).await;
    sandbox.inbound(USER, "hi").await;
    let (status, answer) = sandbox.send(&text(USER, "hello")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    sandbox
        .send(&template("+16505550000", "no_such", &[]))
        .await;

    let (status, messages) = sandbox
        .admin(
            Method::GET,
            &format!("messages?phone_number_id={NUMBER}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let messages: Vec<AcceptedMessage> =
        serde_json::from_value(messages).expect("accepted messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].wamid,
        answer["messages"][0]["id"].as_str().unwrap_or_default()
    );
    let (_, other) = sandbox
        .admin(Method::GET, "messages?phone_number_id=123", None)
        .await;
    assert_eq!(other, json!([]));

    let (_, stats) = sandbox.admin(Method::GET, "stats", None).await;
    let stats: SandboxStats = serde_json::from_value(stats).expect("stats");
    assert_eq!((stats.accepted, stats.inbound), (1, 1));
    assert_eq!(stats.rejections.get(&132_001), Some(&1));

    let (status, _) = sandbox.admin(Method::POST, "reset", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sandbox.sandbox.stats(), SandboxStats::default());
    let (status, answer) = sandbox.send(&text(USER, "hello")).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 131_047),
        "the window was reset"
    );
}

#[tokio::test]
async fn bad_inbound_requests_are_refused() {
    let sandbox = TestSandbox::start(config()).await;
    let cases = [
        (
            json!({"phone_number_id": "nope", "from": USER, "text": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"phone_number_id": NUMBER, "from": "someone", "text": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"phone_number_id": NUMBER, "from": USER, "text": ""}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = sandbox.admin(Method::POST, "inbound", Some(body)).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn the_webhook_target_and_statuses_can_be_set_at_run_time() {
    let receiver = Receiver::start(0).await;
    let sandbox = TestSandbox::start(config()).await;
    let (status, _) = sandbox
        .admin(
            Method::PUT,
            "webhook",
            Some(json!({"url": receiver.url, "app_secret": APP_SECRET})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, statuses) = sandbox
        .admin(Method::PUT, "statuses", Some(json!({"read_rate": 0.0})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statuses["read_rate"], 0.0);

    let (_, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
    let wamid = answer["messages"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    receiver
        .wait_for_statuses(&wamid, &["sent", "delivered"])
        .await;

    let (status, _) = sandbox.admin(Method::DELETE, "webhook", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, unreported) = sandbox
        .send(&template("+16505550000", "hello_world", &[]))
        .await;
    sandbox.sandbox.set_webhook(Some(receiver.target()));
    let (_, reported) = sandbox
        .send(&template("+16505550001", "hello_world", &[]))
        .await;
    let reported = reported["messages"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    receiver
        .wait_for_statuses(&reported, &["sent", "delivered"])
        .await;
    // The earlier send's statuses would have been due first had they been queued.
    let unreported = &unreported["messages"][0]["id"];
    assert!(
        receiver.statuses().iter().all(|s| s["id"] != *unreported),
        "nothing is queued without a target"
    );
}

#[tokio::test]
async fn close_window_closes_it_until_the_user_writes_again() {
    let sandbox = TestSandbox::start(config()).await;
    sandbox.inbound(USER, "hi").await;
    let (status, _) = sandbox.send(&text(USER, "inside")).await;
    assert_eq!(status, StatusCode::OK);

    let body = json!({"phone_number_id": NUMBER, "user": "+16505551234"});
    let (status, answer) = sandbox
        .admin(Method::POST, "close-window", Some(body))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    let (status, answer) = sandbox.send(&text(USER, "stale window")).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 131_047)
    );

    sandbox.inbound(USER, "back").await;
    let (status, _) = sandbox.send(&text(USER, "inside again")).await;
    assert_eq!(status, StatusCode::OK);

    sandbox
        .sandbox
        .close_window(NUMBER, USER)
        .expect("the Rust API closes it too");
    let (status, _) = sandbox.send(&text(USER, "closed again")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_close_window_requests_are_refused() {
    let sandbox = TestSandbox::start(config()).await;
    let cases = [
        (
            json!({"phone_number_id": "nope", "user": USER}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"phone_number_id": NUMBER, "user": "someone"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"phone_number_id": NUMBER}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"phone_number_id": NUMBER, "user": USER, "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"phone_number_id": NUMBER, "user": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = sandbox
            .admin(Method::POST, "close-window", Some(body))
            .await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let response = sandbox
        .client
        .post(format!("{}/admin/close-window", sandbox.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 400);
    let answer: serde_json::Value = response.json().await.expect("a JSON error");
    assert!(answer["error"]["message"].is_string());
}

#[tokio::test]
async fn an_aged_inbound_opens_only_what_is_left_of_its_window() {
    let sandbox = TestSandbox::start(config()).await;
    let aged = |from: &str, age_seconds: u64| {
        json!({"phone_number_id": NUMBER, "from": from, "text": "earlier",
               "age_seconds": age_seconds})
    };
    let (status, answer) = sandbox
        .admin(Method::POST, "inbound", Some(aged(USER, 25 * 3600)))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["wamid"].is_string());
    let (status, answer) = sandbox.send(&text(USER, "too late")).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 131_047),
        "a message 25 hours old leaves the window closed"
    );

    let (status, _) = sandbox
        .admin(
            Method::POST,
            "inbound",
            Some(aged("+16505550002", 23 * 3600)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = sandbox.send(&text("+16505550002", "in time")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let (status, _) = sandbox
        .admin(
            Method::POST,
            "inbound",
            Some(aged("+16505550003", u64::MAX)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an absurd age saturates");
    let (status, _) = sandbox
        .admin(
            Method::POST,
            "inbound",
            Some(json!({"phone_number_id": NUMBER, "from": USER, "text": "x", "age_seconds": -1})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ages are whole seconds ≥ 0"
    );
}
