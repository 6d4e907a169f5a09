//! Suppressions: what Meta said about a user (131026 not on WhatsApp, 131050
//! opted out, 131049 capped) and what users said by keyword is remembered
//! per sender, and a message it holds back fails `suppressed` without a
//! call to Meta; an operator lists and clears them (API and CLI). Real
//! Redis, the sandbox's user directory and webhooks.

use std::time::Duration;

use gateway_sandbox::{TemplateConfig, UserConfig};
use gateway_tests::{GatewayOptions, KEY_ALL, TestGateway, phone_number_id, wait_until};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template_to(to: &str) -> Value {
    json!({
        "from": "s0", "to": to, "type": "template",
        "template": { "name": "hello_world", "language": { "code": "en_US" } },
    })
}

async fn send(gateway: &TestGateway, body: &Value) -> String {
    let (status, answer) = gateway.send(body).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("id").to_owned()
}

/// Waits until the message has ended (`failed`, or at least `sent`).
async fn ended(gateway: &TestGateway, id: &str) -> Value {
    wait_until(&format!("{id} to end"), Duration::from_secs(20), || async {
        let (_, record) = gateway.message(id).await;
        matches!(
            record["status"].as_str(),
            Some("failed" | "sent" | "delivered" | "read")
        )
        .then_some(record)
    })
    .await
}

fn calls_to(gateway: &TestGateway, digits: &str) -> usize {
    gateway
        .sandbox
        .accepted()
        .iter()
        .filter(|m| m.recipient == digits)
        .count()
}

async fn suppressions(gateway: &TestGateway) -> Vec<Value> {
    let (status, body) = gateway.get("/suppressions", &[("from", "s0")]).await;
    assert_eq!(status, 200, "{body}");
    body["suppressions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_not_on_whatsapp_is_not_called_again_until_cleared() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..Default::default()
    })
    .await;
    gateway.sandbox.set_users(vec![UserConfig {
        id: "16505550001".into(),
        not_on_whatsapp: true,
        ..UserConfig::default()
    }]);
    let gone = "+16505550001";

    // Meta accepts the first, then fails it with 131026 in a status webhook.
    let first = send(&gateway, &template_to(gone)).await;
    let record = gateway
        .wait_for_status(&first, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(record["error"]["code"], 131026, "{record}");
    let listed = wait_until("the suppression", Duration::from_secs(10), || async {
        let list = suppressions(&gateway).await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(listed[0]["recipient"], gone, "{listed:?}");
    assert_eq!(listed[0]["scope"], "all", "{listed:?}");
    assert_eq!(listed[0]["code"], 131026, "{listed:?}");
    assert!(listed[0]["until_ms"].as_i64().is_some(), "{listed:?}");

    // The next message to them fails at once, without a call; others go.
    let second = send(&gateway, &template_to(gone)).await;
    let other = send(&gateway, &template_to("+16505550002")).await;
    let record = ended(&gateway, &second).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], 131026, "{record}");
    let (_, letters) = gateway.get("/dead-letters", &[("from", "s0")]).await;
    let reasons: Vec<&str> = letters["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"suppressed"), "{letters}");
    assert_eq!(
        ended(&gateway, &other).await["status"]
            .as_str()
            .map(|s| s != "failed"),
        Some(true)
    );
    assert_eq!(calls_to(&gateway, "16505550001"), 1, "one call only");

    // Cleared by an operator (the CLI here, the API below): called again.
    let (ok, out) = gateway.command(
        BINARY,
        &["suppressions", "list", "--sender", "s0", "--json"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("131026"), "{out}");
    let (ok, out) = gateway.command(
        BINARY,
        &["suppressions", "clear", gone, "--sender", "s0", "--json"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("\"cleared\":1"), "{out}");
    assert!(suppressions(&gateway).await.is_empty());
    let third = send(&gateway, &template_to(gone)).await;
    ended(&gateway, &third).await;
    assert_eq!(
        calls_to(&gateway, "16505550001"),
        2,
        "called again once cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keywords_opt_users_out_of_marketing_and_back_in() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..Default::default()
    })
    .await;
    let pnid = phone_number_id(0);
    let user = "+16505550009";
    gateway
        .sandbox
        .inbound(&pnid, user, " Stop ")
        .expect("inbound");
    let listed = wait_until("the opt-out", Duration::from_secs(10), || async {
        let list = suppressions(&gateway).await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(listed[0]["scope"], "marketing", "{listed:?}");
    assert_eq!(listed[0]["source"], "keyword", "{listed:?}");
    assert_eq!(
        listed[0]["until_ms"],
        Value::Null,
        "until they opt in: {listed:?}"
    );

    // Writing something else does not undo a keyword opt-out; START does.
    let thanks = gateway
        .sandbox
        .inbound(&pnid, user, "thanks")
        .expect("inbound");
    let redis = gateway.redis().await;
    let seen = format!("gw:{{{pnid}}}:inbound:{thanks}");
    wait_until(
        "the gateway to handle the message",
        Duration::from_secs(10),
        || {
            let (mut redis, seen) = (redis.clone(), seen.clone());
            async move {
                let handled: bool = redis::cmd("EXISTS")
                    .arg(&seen)
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                handled.then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        suppressions(&gateway).await.len(),
        1,
        "a message that is not a keyword leaves a keyword opt-out"
    );
    gateway
        .sandbox
        .inbound(&pnid, user, "START")
        .expect("inbound");
    wait_until("the opt-in", Duration::from_secs(10), || async {
        suppressions(&gateway).await.is_empty().then_some(())
    })
    .await;

    // DELETE answers 404 for nothing to clear, and checks its input.
    let response = gateway
        .http
        .delete(format!(
            "{}/suppressions/{}",
            gateway.api_url, "%2B16505550009"
        ))
        .query(&[("from", "s0")])
        .bearer_auth(KEY_ALL)
        .send()
        .await
        .expect("api answers");
    assert_eq!(response.status(), 404);
    let response = gateway
        .http
        .delete(format!("{}/suppressions/not-a-number", gateway.api_url))
        .query(&[("from", "s0")])
        .bearer_auth(KEY_ALL)
        .send()
        .await
        .expect("api answers");
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["field"], "recipient", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_stopped_marketing_gets_no_marketing_template_until_they_write() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        templates: vec![TemplateConfig::new("spring_sale", "en_US", 0).with_category("MARKETING")],
        ..Default::default()
    })
    .await;
    gateway.wait_for_template_registry().await;
    gateway.sandbox.set_users(vec![UserConfig {
        id: "16505550005".into(),
        marketing_opt_out: true,
        ..UserConfig::default()
    }]);
    let user = "+16505550005";
    let marketing = |to: &str| {
        json!({
            "from": "s0", "to": to, "type": "template",
            "template": { "name": "spring_sale", "language": { "code": "en_US" } },
        })
    };

    // Meta fails the first with 131050: the user stopped marketing.
    let first = send(&gateway, &marketing(user)).await;
    let record = gateway
        .wait_for_status(&first, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(record["error"]["code"], 131050, "{record}");
    wait_until("the opt-out", Duration::from_secs(10), || async {
        (!suppressions(&gateway).await.is_empty()).then_some(())
    })
    .await;

    // A second marketing template is not sent; a utility one is.
    let second = send(&gateway, &marketing(user)).await;
    let utility = send(&gateway, &template_to(user)).await;
    let record = ended(&gateway, &second).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], 131050, "{record}");
    let record = ended(&gateway, &utility).await;
    assert_ne!(record["status"], "failed", "{record}");
    let marketing_calls = || {
        gateway
            .sandbox
            .accepted()
            .iter()
            .filter(|m| m.recipient == "16505550005" && m.body.to_string().contains("spring_sale"))
            .count()
    };
    assert_eq!(
        marketing_calls(),
        1,
        "the second marketing template made no call"
    );

    // The user writes: Meta's opt-out ends, marketing goes again.
    gateway
        .sandbox
        .inbound(&phone_number_id(0), user, "hi")
        .expect("inbound");
    wait_until("the opt-out to end", Duration::from_secs(10), || async {
        suppressions(&gateway).await.is_empty().then_some(())
    })
    .await;
    let third = send(&gateway, &marketing(user)).await;
    ended(&gateway, &third).await;
    assert_eq!(marketing_calls(), 2, "marketing allowed again");
}
