//! With Redis down, `/send` answers 503 with Retry-After and accepts
//! nothing; when Redis returns, sending works again without a restart.

use std::time::Duration;

use gateway_tests::{GatewayOptions, TestGateway, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_answers_503_while_redis_is_down_and_recovers_after() {
    let mut gateway = TestGateway::start(GatewayOptions::default()).await;
    let message = json!({"from": "s0", "to": "+16505551234", "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    let (status, body) = gateway.send(&message).await;
    assert_eq!(status, 202, "{body}");

    gateway.redis.stop();
    for _ in 0..5 {
        let response = gateway
            .http
            .post(format!("{}/send", gateway.api_url))
            .bearer_auth(gateway_tests::KEY_ALL)
            .json(&message)
            .send()
            .await
            .expect("api answers");
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unavailable");
    }
    let ready = gateway
        .http
        .get(format!("{}/readyz", gateway.api_url))
        .send()
        .await
        .expect("answer");
    assert_eq!(ready.status().as_u16(), 503);

    gateway.redis.restart();
    let id = wait_until(
        "the api to accept again",
        Duration::from_secs(15),
        || async {
            let (status, body) = gateway.send(&message).await;
            (status == 202)
                .then(|| body["id"].as_str().map(str::to_owned))
                .flatten()
        },
    )
    .await;
    // The restarted Redis kept nothing (no persistence), so what it holds is
    // only what was accepted after it came back: exactly one message.
    gateway
        .wait_for_status(&id, "sent", Duration::from_secs(15))
        .await;
}
