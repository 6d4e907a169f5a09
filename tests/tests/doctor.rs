//! `gateway doctor`, run as the real binary against a test gateway: it
//! passes on a healthy sandbox, and each check, broken in the sandbox in
//! turn, fails with its fix. And the worker's side of sender health: a
//! fallback template Meta pauses (webhook) is no longer sent as a fallback.

use std::time::Duration;

use gateway_sandbox::{
    MANAGEMENT_SCOPE, NumberHealthChange, QualityRating, TemplateStatus, TokenState,
};
use gateway_tests::{GatewayOptions, TestGateway, phone_number_id, wait_until};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const WABA: &str = "2000";

/// Runs `gateway doctor s0 --json` against the test api (or `api_url`).
fn doctor(gateway: &TestGateway, api_url: &str) -> (bool, Value) {
    let (ok, out) = tokio::task::block_in_place(|| {
        gateway.command(BINARY, &["doctor", "s0", "--json", "--api-url", api_url])
    });
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(report["ok"], ok, "exit status and verdict agree: {report}");
    (ok, report)
}

/// The named check of a report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {report}"))
}

fn assert_fails_with_fix(report: &Value, name: &str) {
    let failed = check(report, name);
    assert_eq!(failed["ok"], false, "{name} should fail: {report}");
    let fix = failed["fix"].as_str().unwrap_or_default();
    assert!(!fix.is_empty(), "{name} fails without a fix: {report}");
}

fn healthy_options() -> GatewayOptions {
    GatewayOptions {
        start_worker: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_healthy_sandbox() {
    let gateway = TestGateway::start(healthy_options()).await;
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(ok, "{report}");
    for name in [
        "token",
        "token_expiry",
        "token_scopes",
        "number",
        "quality",
        "waba",
        "fallback_template",
        "subscribed_app",
        "webhook",
    ] {
        assert_eq!(check(&report, name)["ok"], true, "{name}: {report}");
    }
    assert!(
        check(&report, "quality")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("GREEN") && d.contains("STANDARD")),
        "{report}"
    );

    // The text form says the same, one line per check.
    let (ok, out) = tokio::task::block_in_place(|| {
        gateway.command(BINARY, &["doctor", "--api-url", &gateway.api_url])
    });
    assert!(ok, "{out}");
    assert!(out.contains("all 9 checks passed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_check_fails_with_its_fix_and_passes_once_mended() {
    let gateway = TestGateway::start(healthy_options()).await;
    let sandbox = &gateway.sandbox;
    let pnid = phone_number_id(0);
    let token = "token-0";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let healthy = || {
        let (ok, report) = doctor(&gateway, &gateway.api_url);
        assert!(ok, "mended: {report}");
    };

    // A token that expires in two days.
    sandbox
        .set_token(
            token,
            TokenState {
                expires_at: now + 2 * 86_400,
                ..TokenState::default()
            },
        )
        .expect("known token");
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "token_expiry");
    assert_eq!(check(&report, "token")["ok"], true, "{report}");
    sandbox
        .set_token(token, TokenState::default())
        .expect("known token");
    healthy();

    // A revoked token.
    sandbox
        .set_token(
            token,
            TokenState {
                valid: false,
                ..TokenState::default()
            },
        )
        .expect("known token");
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "token");
    sandbox
        .set_token(token, TokenState::default())
        .expect("known token");
    healthy();

    // A token without the messaging scope.
    sandbox
        .set_token(
            token,
            TokenState {
                scopes: vec![MANAGEMENT_SCOPE.to_owned()],
                ..TokenState::default()
            },
        )
        .expect("known token");
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "token_scopes");
    assert!(
        check(&report, "token_scopes")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("whatsapp_business_messaging")),
        "{report}"
    );
    sandbox
        .set_token(token, TokenState::default())
        .expect("known token");
    healthy();

    // A disconnected number.
    let change = |change: NumberHealthChange| {
        sandbox.change_number(&pnid, change).expect("known number");
    };
    change(NumberHealthChange {
        status: Some("DISCONNECTED".into()),
        ..Default::default()
    });
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "number");
    change(NumberHealthChange {
        status: Some("CONNECTED".into()),
        ..Default::default()
    });
    healthy();

    // Quality RED.
    change(NumberHealthChange {
        quality_rating: Some(QualityRating::Red),
        ..Default::default()
    });
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "quality");
    assert_eq!(check(&report, "number")["ok"], true, "{report}");
    change(NumberHealthChange {
        quality_rating: Some(QualityRating::Green),
        ..Default::default()
    });
    healthy();

    // The number moved to another WABA.
    change(NumberHealthChange {
        waba_id: Some("9999".into()),
        ..Default::default()
    });
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "waba");
    change(NumberHealthChange {
        waba_id: Some(WABA.into()),
        ..Default::default()
    });
    healthy();

    // The fallback template paused, then rejected.
    for status in [TemplateStatus::Paused, TemplateStatus::Rejected] {
        sandbox
            .set_template_status("hello_world", "en_US", status)
            .expect("registered template");
        let (ok, report) = doctor(&gateway, &gateway.api_url);
        assert!(!ok);
        assert_fails_with_fix(&report, "fallback_template");
        assert!(
            check(&report, "fallback_template")["detail"]
                .as_str()
                .is_some_and(|d| d.contains(status.meta_name())),
            "{report}"
        );
    }
    sandbox
        .set_template_status("hello_world", "en_US", TemplateStatus::Approved)
        .expect("registered template");
    healthy();

    // The app unsubscribed from the WABA.
    sandbox.set_subscribed(WABA, false);
    let (ok, report) = doctor(&gateway, &gateway.api_url);
    assert!(!ok);
    assert_fails_with_fix(&report, "subscribed_app");
    sandbox.set_subscribed(WABA, true);
    healthy();

    // An api that does not answer.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", unused.local_addr().expect("addr"));
    drop(unused);
    let (ok, report) = doctor(&gateway, &dead);
    assert!(!ok);
    assert_fails_with_fix(&report, "webhook");
    for name in [
        "token",
        "number",
        "waba",
        "fallback_template",
        "subscribed_app",
    ] {
        assert_eq!(check(&report, name)["ok"], true, "{name}: {report}");
    }
    // Something that answers but is not the api's /webhook.
    let (ok, report) = doctor(&gateway, &format!("{}/nowhere", gateway.api_url));
    assert!(!ok);
    assert_fails_with_fix(&report, "webhook");
}

fn text_to(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "text", "text": {"body": "Your order shipped"}})
}

/// Waits until the template registry says `status` for `hello_world`
/// (the worker has handled the template status webhook).
async fn wait_for_registry_status(gateway: &TestGateway, status: &str) {
    wait_until(
        "the template registry to follow the webhook",
        Duration::from_secs(20),
        || async {
            let entry = gateway.template_entry("hello_world", "en_US").await?;
            (entry["status"] == status).then_some(())
        },
    )
    .await;
}

/// Waits until the worker has handled `n` template status webhooks.
async fn wait_for_template_webhooks(gateway: &TestGateway, n: u64) {
    wait_until(
        "the template status webhook to be handled",
        Duration::from_secs(20),
        || async {
            let seen = gateway
                .metrics
                .webhook_events
                .with_label_values(&["message_template_status_update"])
                .get();
            (seen >= n).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_fallback_template_is_no_longer_sent_as_the_fallback() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..Default::default()
    })
    .await;
    gateway
        .sandbox
        .set_template_status("hello_world", "en_US", TemplateStatus::Paused)
        .expect("registered template");
    wait_for_template_webhooks(&gateway, 1).await;
    wait_for_registry_status(&gateway, "PAUSED").await;

    // A text to a closed window: the sender's fallback is paused, so the
    // message fails unsent rather than burning a send on 132015.
    let ids = gateway.send_all(&[text_to("+16505550001")]).await;
    let record = gateway
        .wait_for_status(&ids[0], "failed", Duration::from_secs(20))
        .await;
    let history = record["history"].as_array().expect("history");
    assert!(
        history.iter().any(|e| e["reason"] == "no_usable_fallback"),
        "{record}"
    );
    assert!(gateway.sandbox.accepted().is_empty(), "nothing was sent");

    // The message's own fallback template still goes.
    let mut own = text_to("+16505550002");
    own["fallback_template"] = json!({"name": "order_update", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}]});
    let ids = gateway.send_all(&[own]).await;
    let record = gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(20))
        .await;
    assert_eq!(record["fallback_used"], true, "{record}");

    // Approved again: the sender's fallback is used again.
    gateway
        .sandbox
        .set_template_status("hello_world", "en_US", TemplateStatus::Approved)
        .expect("registered template");
    wait_for_template_webhooks(&gateway, 2).await;
    wait_for_registry_status(&gateway, "APPROVED").await;
    let ids = gateway.send_all(&[text_to("+16505550003")]).await;
    let record = gateway
        .wait_for_status(&ids[0], "sent", Duration::from_secs(20))
        .await;
    assert_eq!(record["fallback_used"], true, "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_exports_quality_and_throughput_and_follows_quality_webhooks() {
    // Configured above any tier: the tier decides the sender's rate.
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        rate_per_second: 1_000,
        ..Default::default()
    })
    .await;
    // A number configured at 1,000 per second starts on the HIGH level; Meta
    // moves it down to STANDARD.
    gateway
        .sandbox
        .change_number(
            &phone_number_id(0),
            NumberHealthChange {
                throughput: Some(gateway_sandbox::ThroughputLevel::Standard),
                ..Default::default()
            },
        )
        .expect("known number");
    let effective_rate = || {
        gateway
            .metrics
            .effective_rate
            .with_label_values(&["s0"])
            .get()
    };
    let gauge = |family: &str| {
        let metrics = &gateway.metrics;
        match family {
            "quality" => metrics
                .sender_quality_rating
                .with_label_values(&["s0"])
                .get(),
            _ => metrics
                .sender_throughput_limit
                .with_label_values(&["s0"])
                .get(),
        }
    };
    // The first poll, once the worker owns the sender.
    wait_until("the first health poll", Duration::from_secs(20), || async {
        (gauge("quality") == 1 && gauge("throughput") == 80).then_some(())
    })
    .await;
    // STANDARD allows 80 per second, inbound included: the sender gets 70.
    wait_until(
        "the rate to follow the STANDARD tier",
        Duration::from_secs(10),
        || async { (effective_rate() == 70).then_some(()) },
    )
    .await;
    // Meta flags the number and raises its throughput: the webhook makes
    // the worker read the number again.
    gateway
        .sandbox
        .change_number(
            &phone_number_id(0),
            NumberHealthChange {
                quality_rating: Some(QualityRating::Red),
                ..Default::default()
            },
        )
        .expect("known number");
    wait_until("quality RED", Duration::from_secs(20), || async {
        (gauge("quality") == 3).then_some(())
    })
    .await;
    gateway
        .sandbox
        .change_number(
            &phone_number_id(0),
            NumberHealthChange {
                throughput: Some(gateway_sandbox::ThroughputLevel::High),
                ..Default::default()
            },
        )
        .expect("known number");
    wait_until("throughput HIGH", Duration::from_secs(20), || async {
        (gauge("throughput") == 1_000).then_some(())
    })
    .await;
    wait_until(
        "the rate to follow the HIGH tier",
        Duration::from_secs(10),
        || async { (effective_rate() == 875).then_some(()) },
    )
    .await;
    let text = gateway.metrics.render();
    assert!(
        text.contains("gateway_sender_quality_rating{sender=\"s0\"} 3"),
        "{text}"
    );
}
