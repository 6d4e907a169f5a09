//! Fault injection as a client sees it.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use gateway_sandbox::{Faults, Rules};
use reqwest::Method;
use serde_json::{Value, json};

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

/// Meta's error without its per-request `fbtrace_id`.
fn without_trace(mut answer: Value) -> Value {
    if let Some(error) = answer["error"].as_object_mut() {
        error.remove("fbtrace_id");
    }
    answer
}

#[tokio::test]
async fn a_pair_limited_recipient_gets_131056_on_every_send_and_uses_no_quota() {
    let mut config = config();
    config.numbers[0].rate_per_second = 3;
    let sandbox = TestSandbox::start(config).await;
    sandbox.sandbox.set_faults(Faults {
        pair_limited_recipients: vec![USER.into()],
        ..Faults::default()
    });
    let mut forced = Value::Null;
    for _ in 0..10 {
        // Another form of the same number: recipients match as sends are keyed.
        let (status, answer) = sandbox
            .send(&template("+16505551234", "hello_world", &[]))
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::BAD_REQUEST, 131_056)
        );
        forced = answer;
    }
    for _ in 0..2 {
        let (status, answer) = sandbox
            .send(&template("+16505550000", "hello_world", &[]))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "ten refusals took no quota: {answer}"
        );
    }
    let stats = sandbox.sandbox.stats();
    assert_eq!(stats.rejections.get(&131_056), Some(&10));
    assert_eq!(stats.accepted, 2);

    sandbox.sandbox.set_faults(Faults::default());
    let (status, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK, "served again: {answer}");

    // The forced answer is the pair rule's own.
    sandbox.sandbox.set_rules(Rules {
        throughput: false,
        ..Rules::default()
    });
    let burst = template("+16505550009", "hello_world", &[]);
    for _ in 0..45 {
        assert_eq!(sandbox.send(&burst).await.0, StatusCode::OK);
    }
    let (status, real) = sandbox.send(&burst).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(without_trace(forced), without_trace(real));
}

#[tokio::test]
async fn a_failing_recipient_gets_a_5xx_on_every_send_while_others_are_served() {
    let sandbox = TestSandbox::start(config()).await;
    let bsuid = "US.13491208655302741918";
    let (status, set) = sandbox
        .admin(
            Method::PUT,
            "faults",
            Some(json!({"failing_recipients": [USER_DIGITS, bsuid]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let (_, faults) = sandbox.admin(Method::GET, "faults", None).await;
    assert_eq!(faults["failing_recipients"], json!([USER_DIGITS, bsuid]));
    assert_eq!(faults["pair_limited_recipients"], json!([]));

    let to_bsuid = json!({"messaging_product": "whatsapp", "recipient": bsuid, "type": "template",
                          "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    for _ in 0..5 {
        for body in [template(USER, "hello_world", &[]), to_bsuid.clone()] {
            let (status, answer) = sandbox.send(&body).await;
            assert!(status.is_server_error(), "{status}");
            assert!(matches!(error_code(&answer), 1 | 2), "{answer}");
        }
        let (status, answer) = sandbox
            .send(&template("+16505550000", "hello_world", &[]))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let stats = sandbox.sandbox.stats();
    let server_errors = [1, 2]
        .iter()
        .filter_map(|code| stats.rejections.get(code))
        .sum::<u64>();
    assert_eq!(server_errors, 10);
    assert_eq!(stats.accepted, 5);
    assert!(
        sandbox
            .sandbox
            .accepted()
            .iter()
            .all(|m| m.recipient == "16505550000")
    );

    sandbox.admin(Method::PUT, "faults", Some(json!({}))).await;
    let (status, answer) = sandbox.send(&template(USER, "hello_world", &[])).await;
    assert_eq!(status, StatusCode::OK, "served again: {answer}");
    let (status, answer) = sandbox.send(&to_bsuid).await;
    assert_eq!(status, StatusCode::OK, "served again: {answer}");
}
