//! `/metrics` after a short end-to-end run exports every family the
//! dashboards and alerts use, each provoked by a real event; and the
//! per-sender gauges (paused, effective rate, queue depth and age) come only
//! from the sender's current owner, so a handover leaves no stale series.

use std::collections::HashSet;
use std::time::Duration;

use gateway_sandbox::Faults;
use gateway_tests::{GatewayOptions, TestGateway, phone_number_id, rfc3339_in, wait_until};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(from: &str, to: &str, name: &str) -> Value {
    json!({"from": from, "to": to, "type": "template",
        "template": {"name": name, "language": {"code": "en_US"}}})
}

/// The value of the first sample whose line starts with `series`
/// (`name{labels}` as the text format writes it).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

async fn wait_for_sample(gateway: &TestGateway, what: &str, check: impl Fn(&str) -> bool) {
    wait_until(what, Duration::from_secs(30), || async {
        check(&gateway.api_metrics().await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_exported_after_a_short_run() {
    let mut gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        start_worker: false,
        // A portfolio (far from its limit) for the messaging-limit families.
        extra_toml: "[portfolios]\n\"5000\" = { wabas = [\"2000\"], limit_override = 10000 }\n"
            .into(),
        ..Default::default()
    })
    .await;
    let pnid = phone_number_id(0);
    // One message fails for good: an unknown template (132001, a dead
    // letter), queued before the worker has read the template registry
    // (after, /send refuses it itself).
    let (status, answer) = gateway
        .send(&template("s0", "+16505550100", "no_such_template"))
        .await;
    assert_eq!(status, 202, "{answer}");
    let broken = answer["id"].as_str().expect("id").to_owned();
    gateway.start_worker().await;

    // Taking the sender sets its effective rate to the configured one.
    wait_for_sample(&gateway, "the sender's effective rate", |text| {
        sample(text, r#"gateway_sender_effective_rate{sender="s0"}"#) == Some(70.0)
    })
    .await;

    // Sends in a bunch (the rate window makes some wait), a text to a
    // closed window (the fallback template), and a second message to one
    // recipient that must wait for the pair limit and expires meanwhile.
    let mut messages: Vec<Value> = (0..10)
        .map(|i| template("s0", &format!("+1650555{i:04}"), "hello_world"))
        .collect();
    messages
        .push(json!({"from": "s0", "to": "+16505550101", "type": "text", "text": {"body": "hi"}}));
    let ids = gateway.send_all(&messages).await;
    let mut late = template("s0", "+16505550000", "hello_world");
    late["expires_at"] = json!(rfc3339_in(Duration::from_secs(2)));
    let (status, answer) = gateway.send(&late).await;
    assert_eq!(status, 202, "{answer}");
    let late_id = answer["id"].as_str().expect("id").to_owned();

    for id in &ids[..10] {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
    }
    gateway
        .wait_for_status(&broken, "failed", Duration::from_secs(30))
        .await;
    let fallback = gateway
        .wait_for_status(&ids[10], "read", Duration::from_secs(30))
        .await;
    assert_eq!(fallback["fallback_used"], true, "{fallback}");
    gateway
        .wait_for_status(&late_id, "expired", Duration::from_secs(30))
        .await;

    // A user writes in: an inbound webhook opens a window.
    gateway
        .sandbox
        .inbound(&pnid, "+16505550200", "hello")
        .expect("inbound");
    wait_for_sample(&gateway, "the inbound webhook", |text| {
        sample(text, r#"gateway_windows_opened_total{sender="s0"}"#).is_some()
    })
    .await;

    // Meta throttles for a moment: the message is retried and the sender's
    // rate halved.
    gateway.sandbox.set_faults(Faults {
        throttle_for_ms: 300,
        ..Faults::default()
    });
    let (status, answer) = gateway
        .send(&template("s0", "+16505550300", "hello_world"))
        .await;
    assert_eq!(status, 202, "{answer}");
    wait_for_sample(&gateway, "the halved rate", |text| {
        sample(text, r#"gateway_sender_effective_rate{sender="s0"}"#) == Some(35.0)
    })
    .await;
    gateway
        .wait_for_status(
            answer["id"].as_str().expect("id"),
            "sent",
            Duration::from_secs(30),
        )
        .await;

    // A forged webhook.
    let (status, _) = gateway
        .post(
            "/webhook",
            None,
            br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 401);

    // The queue gauges of the owned sender.
    wait_for_sample(&gateway, "the queue gauges", |text| {
        sample(text, r#"gateway_queue_depth{sender="s0"}"#).is_some()
            && sample(text, r#"gateway_queue_oldest_age_seconds{sender="s0"}"#).is_some()
    })
    .await;

    // Last, Redis goes away: the api answers 503 and counts the error.
    gateway.redis.stop();
    let (status, _) = gateway
        .send(&template("s0", "+16505550400", "hello_world"))
        .await;
    assert_eq!(status, 503);

    let text = gateway.api_metrics().await;
    let exported: HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let mut missing: Vec<String> = gateway
        .metrics
        .family_names()
        .into_iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    // The families the dashboards and alerts read, by name, in case
    // `family_names` ever misses one.
    for name in [
        "gateway_messages_accepted_total",
        "gateway_messages_sent_total",
        "gateway_message_statuses_total",
        "gateway_messages_failed_total",
        "gateway_retries_total",
        "gateway_template_fallbacks_total",
        "gateway_dead_letters_total",
        "gateway_limiter_waits_total",
        "gateway_pair_limit_deferrals_total",
        "gateway_sender_paused",
        "gateway_sender_effective_rate",
        "gateway_worker_senders_owned",
        "gateway_lease_changes_total",
        "gateway_queue_depth",
        "gateway_queue_oldest_age_seconds",
        "gateway_accept_to_send_seconds",
        "gateway_accept_to_delivered_seconds",
        "gateway_graph_request_duration_seconds",
        "gateway_webhook_events_total",
        "gateway_webhook_signature_failures_total",
        "gateway_redis_errors_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        if !exported.contains(name) && !missing.iter().any(|m| m == name) {
            missing.push(name.to_owned());
        }
    }
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");

    // Samples with the labels the dashboards split by.
    for series in [
        r#"gateway_message_statuses_total{sender="s0",status="delivered"}"#,
        r#"gateway_message_statuses_total{sender="s0",status="read"}"#,
        r#"gateway_messages_failed_total{code="132001",sender="s0"}"#,
        r#"gateway_dead_letters_total{code="132001",sender="s0"}"#,
        r#"gateway_template_fallbacks_total{sender="s0"}"#,
        r#"gateway_messages_expired_total{sender="s0"}"#,
        r#"gateway_sender_paused{sender="s0"}"#,
        r#"gateway_lease_changes_total{change="acquired"}"#,
        r#"gateway_webhook_events_total{kind="inbound"}"#,
        r#"gateway_webhook_signature_failures_total{reason="missing"}"#,
        r#"gateway_redis_errors_total{operation="enqueue"}"#,
        r#"gateway_accept_to_delivered_seconds_count{sender="s0"}"#,
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v >= 0.0),
            "{series} missing\n{text}"
        );
    }
    assert_eq!(
        sample(&text, r#"gateway_sender_paused{sender="s0"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&text, "gateway_worker_senders_owned"), Some(1.0));
    for name in gateway.metrics.histogram_names() {
        assert!(
            text.contains(&format!("{name}_bucket{{")),
            "{name} has no buckets"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sender_gauges_leave_with_the_sender() {
    // The worker in this process (its metrics are `gateway.metrics`) takes
    // every sender; all are paused, so each exports paused = 1. A second
    // worker joins and takes about half: those must vanish from this
    // worker's metrics, the others stay.
    const SENDERS: usize = 12;
    let gateway = TestGateway::start(GatewayOptions {
        senders: SENDERS,
        ..Default::default()
    })
    .await;
    let here = format!("-{}-", std::process::id());
    wait_until(
        "the worker here to own every sender",
        Duration::from_secs(20),
        || async {
            let owners = gateway.lease_owners(SENDERS).await;
            owners
                .iter()
                .all(|o| o.as_deref().is_some_and(|o| o.contains(&here)))
                .then_some(())
        },
    )
    .await;
    for i in 0..SENDERS {
        let (ok, output) = gateway.command(BINARY, &["senders", "pause", &format!("s{i}")]);
        assert!(ok, "{output}");
    }
    wait_for_sample(&gateway, "every sender paused", |text| {
        (0..SENDERS).all(|i| {
            sample(text, &format!(r#"gateway_sender_paused{{sender="s{i}"}}"#)) == Some(1.0)
        })
    })
    .await;

    let _other = gateway.spawn_worker(BINARY);
    let moved: Vec<usize> = wait_until(
        "the new worker to take some senders",
        Duration::from_secs(20),
        || async {
            let owners = gateway.lease_owners(SENDERS).await;
            let moved: Vec<usize> = (0..SENDERS)
                .filter(|&i| owners[i].as_deref().is_some_and(|o| !o.contains(&here)))
                .collect();
            // Settled: every sender has an owner and some moved.
            (owners.iter().all(Option::is_some) && !moved.is_empty()).then_some(moved)
        },
    )
    .await;
    // A handover may still be under way: wait, with a deadline, until what
    // this worker exports follows who owns what.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    let (owners, kept) = loop {
        let owners = gateway.lease_owners(SENDERS).await;
        let text = gateway.api_metrics().await;
        let (problems, kept) = exported_against_owners(&owners, &text, &here);
        if problems.is_empty() {
            break (owners, kept);
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "moved {moved:?}: {problems:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(kept > 0, "every sender moved: {owners:?}");
}

/// What this worker's per-sender gauges get wrong against the lease owners
/// (a sender it owns must be exported, one it lost must not be, and the
/// owned count must match), and how many senders it owns.
fn exported_against_owners(
    owners: &[Option<String>],
    text: &str,
    here: &str,
) -> (Vec<String>, u32) {
    let mut problems = Vec::new();
    let mut kept = 0;
    for (i, owner) in owners.iter().enumerate() {
        let ours = owner.as_deref().is_some_and(|o| o.contains(here));
        for family in [
            "gateway_sender_paused",
            "gateway_sender_effective_rate",
            "gateway_queue_depth",
            "gateway_queue_oldest_age_seconds",
        ] {
            let series = format!(r#"{family}{{sender="s{i}"}}"#);
            let exported = sample(text, &series).is_some();
            // Depth is reported on take; give it the benefit of a round.
            if ours && !exported && !family.starts_with("gateway_queue") {
                problems.push(format!("{series} missing"));
            } else if !ours && exported {
                problems.push(format!("{series} still exported after s{i} moved"));
            }
        }
        if ours {
            kept += 1;
        }
    }
    if sample(text, "gateway_worker_senders_owned") != Some(f64::from(kept)) {
        problems.push(format!("gateway_worker_senders_owned is not {kept}"));
    }
    (problems, kept)
}
