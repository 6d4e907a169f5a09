//! Cost visibility: billable messages and conversations are counted per
//! sender and category from the `pricing` (and `conversation`) of the
//! sandbox's status webhooks, exactly once per message and per
//! conversation although every status is posted twice. Real Redis, the
//! sandbox, the api and a worker.

use std::time::Duration;

use gateway_sandbox::StatusConfig;
use gateway_tests::{GatewayOptions, TestGateway, phone_number_id, wait_until};
use serde_json::{Value, json};

fn template(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Every value of `family` for sender s0, by category.
fn by_category(text: &str, family: &str) -> Vec<(String, f64)> {
    let prefix = format!("{family}{{category=\"");
    let mut values: Vec<(String, f64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (category, rest) = rest.split_once('"')?;
            let value = rest.strip_prefix(",sender=\"s0\"} ")?;
            Some((category.to_owned(), value.parse::<f64>().ok()?))
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

async fn send(gateway: &TestGateway, body: &Value) -> String {
    let (status, answer) = gateway.send(body).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("id").to_owned()
}

/// Waits until the worker has seen at least `count` repeated statuses:
/// then every status posted so far, first copy and repeat, is processed.
async fn wait_for_repeats(gateway: &TestGateway, count: f64) {
    wait_until(
        &format!("{count} repeated statuses"),
        Duration::from_secs(30),
        || async {
            let text = gateway.api_metrics().await;
            sample(&text, r#"gateway_webhook_events_total{kind="duplicate"}"#)
                .is_some_and(|seen| seen >= count)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billable_messages_and_conversations_count_once_per_message_by_category() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        pair_interval_ms: 100,
        ..Default::default()
    })
    .await;
    let pnid = phone_number_id(0);
    // Every status webhook is posted twice.
    gateway.sandbox.set_statuses(StatusConfig {
        duplicate_rate: 1.0,
        ..gateway.sandbox.statuses()
    });

    // Per-message pricing, as Meta sends it today: three utility templates
    // to users whose window is closed are billable; a reply and a utility
    // template inside an open window are free.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send(&gateway, &template(&format!("+1650555300{i}"))).await);
    }
    let writer = "+16505553100";
    gateway
        .sandbox
        .inbound(&pnid, writer, "hello")
        .expect("inbound");
    wait_until("the window to open", Duration::from_secs(20), || async {
        let (_, window) = gateway
            .get(&format!("/windows/{writer}"), &[("from", "s0")])
            .await;
        (window["open"] == true).then_some(())
    })
    .await;
    ids.push(
        send(
            &gateway,
            &json!({"from": "s0", "to": writer, "type": "text", "text": {"body": "hi"}}),
        )
        .await,
    );
    ids.push(send(&gateway, &template(writer)).await);
    for id in &ids {
        let record = gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
        assert_eq!(record["fallback_used"], false, "{record}");
    }
    // Five messages, each with sent, delivered and read twice.
    wait_for_repeats(&gateway, 15.0).await;
    let text = gateway.api_metrics().await;
    assert_eq!(
        by_category(&text, "gateway_billable_messages_total"),
        [("utility".to_owned(), 3.0)],
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"gateway_billable_messages_total{category="service",sender="s0"}"#
        ),
        Some(0.0),
        "the common categories start at 0"
    );
    assert!(
        by_category(&text, "gateway_conversations_total").is_empty(),
        "no conversation object under per-message pricing"
    );

    // Conversation-based pricing (webhook versions before v24), and Meta
    // skipping `delivered` (delivered and read at once): two templates to
    // one user share a conversation, a third user opens another; each
    // message is billed once, at its read.
    gateway.sandbox.set_statuses(StatusConfig {
        duplicate_rate: 1.0,
        drop_delivered_rate: 1.0,
        conversations: true,
        ..gateway.sandbox.statuses()
    });
    let mut more = Vec::new();
    for to in ["+16505553200", "+16505553200", "+16505553201"] {
        more.push(send(&gateway, &template(to)).await);
    }
    for id in &more {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
    }
    // Three more messages, each with sent and read twice.
    wait_for_repeats(&gateway, 21.0).await;
    let text = gateway.api_metrics().await;
    assert_eq!(
        by_category(&text, "gateway_billable_messages_total"),
        [("utility".to_owned(), 6.0)],
        "{text}"
    );
    assert_eq!(
        by_category(&text, "gateway_conversations_total"),
        [("utility".to_owned(), 2.0)],
        "{text}"
    );
}
