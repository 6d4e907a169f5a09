//! Fault injection as a client sees it.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use gateway_sandbox::Faults;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_5xx_rate_of_one_fails_every_send_with_metas_shape() {
    let sandbox = TestSandbox::start(config()).await;
    sandbox.sandbox.set_faults(Faults {
        error_5xx_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..10 {
        let (status, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
        assert!(status.is_server_error(), "{status}");
        assert!(matches!(error_code(&answer), 1 | 2), "{answer}");
    }
    assert!(sandbox.sandbox.accepted().is_empty());
    sandbox.sandbox.set_faults(Faults::default());
    let (status, _) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_dropped_connection_is_a_connection_error_to_the_client() {
    let sandbox = TestSandbox::start(config()).await;
    let (status, _) = sandbox
        .admin(
            Method::PUT,
            "faults",
            Some(json!({"drop_connection_rate": 1.0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let error = sandbox
        .client
        .post(format!("{}/v25.0/{NUMBER}/messages", sandbox.base))
        .bearer_auth(TOKEN)
        .json(&template(USER, "hello_world", &[]))
        .send()
        .await
        .expect_err("no answer");
    assert!(
        error.is_request() && !error.is_timeout() && error.status().is_none(),
        "{error:?}"
    );
    assert!(sandbox.sandbox.accepted().is_empty());
    assert_eq!(sandbox.sandbox.stats().connections_dropped, 1);

    sandbox.admin(Method::PUT, "faults", Some(json!({}))).await;
    let (status, _) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK, "a new connection works");
}

#[tokio::test]
async fn forced_throttle_and_maintenance_last_for_their_period() {
    let sandbox = TestSandbox::start(config()).await;
    let (_, faults) = sandbox
        .admin(Method::PUT, "faults", Some(json!({"throttle_for_ms": 300})))
        .await;
    assert_eq!(faults["throttle_for_ms"], 300);
    let (status, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 130_429)
    );
    let (_, left) = sandbox.admin(Method::GET, "faults", None).await;
    assert!(left["throttle_for_ms"].as_u64().is_some_and(|ms| ms <= 300));

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(error_code(&answer), 130_429);
        assert!(Instant::now() < deadline, "still throttled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sandbox.sandbox.set_faults(Faults {
        maintenance_for_ms: 60_000,
        ..Faults::default()
    });
    let (status, answer) = sandbox
        .send(&template("+16505550000", "hello_world", &[]))
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::BAD_REQUEST, 131_057)
    );
}

#[tokio::test]
async fn added_latency_delays_the_answer() {
    let sandbox = TestSandbox::start(config()).await;
    sandbox.sandbox.set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, _) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}
