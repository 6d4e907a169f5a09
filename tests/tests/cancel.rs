//! Cancelling messages against the sandbox: `DELETE /messages/{id}`, `POST
//! /messages/cancel` and `gateway message cancel`. A cancel that comes
//! before the send wins (queued, scheduled, retrying or held): the message
//! is never sent, its record says `cancelled` and its callback hears so. A
//! cancel that comes while it is being sent, or after, is refused 409 with
//! that state and changes nothing. Cancels racing a worker's pickup end in
//! exactly one of cancelled or sent, never both and never neither. A bulk
//! cancel by metadata stops a campaign mid-drain, and nothing it matched is
//! sent after its answer. A client cancels only its own messages.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gateway_sandbox::{Faults, WebhookTarget};
use gateway_tests::{
    APP_SECRET, GatewayOptions, KEY_ALL, KEY_ONE, SignedReceiver, TestGateway, delete_from,
    phone_number_id, rfc3339_in, send_counts, wait_until, wait_until_every,
};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(to: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

fn with(mut message: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().expect("an object") {
        message[key] = value.clone();
    }
    message
}

fn parse(output: &str) -> Value {
    serde_json::from_str(output.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {output}"))
}

/// `POST /send` as the client allowed every sender; the new message's id.
async fn queue(gateway: &TestGateway, message: &Value) -> String {
    let (status, answer) = gateway.send(message).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("id").to_owned()
}

async fn cancel(gateway: &TestGateway, id: &str, key: &str) -> (u16, Value) {
    gateway.delete(&format!("/messages/{id}"), Some(key)).await
}

async fn cancel_matching(gateway: &TestGateway, key: &str, body: &Value) -> (u16, Value) {
    gateway
        .post("/messages/cancel", Some(key), body.to_string().into_bytes())
        .await
}

/// How many times the sandbox accepted the message.
fn times_sent(gateway: &TestGateway, id: &str) -> usize {
    send_counts(&gateway.sandbox.accepted())
        .get(id)
        .copied()
        .unwrap_or(0)
}

async fn status_of(gateway: &TestGateway, id: &str) -> String {
    let (code, record) = gateway.message(id).await;
    assert_eq!(code, 200, "{id}: {record}");
    record["status"].as_str().unwrap_or_default().to_owned()
}

/// The statuses of a record's history, oldest first.
fn history(record: &Value) -> Vec<String> {
    record["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|event| event["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Asserts the record says cancelled, with exactly one `cancelled` event, last.
fn assert_cancelled(record: &Value) {
    assert_eq!(record["status"], "cancelled", "{record}");
    let history = history(record);
    assert_eq!(
        history.last().map(String::as_str),
        Some("cancelled"),
        "{record}"
    );
    assert_eq!(
        history.iter().filter(|s| *s == "cancelled").count(),
        1,
        "{record}"
    );
}

/// Asserts a 409 `not_cancellable` naming `state`.
fn assert_not_cancellable(code: u16, answer: &Value, state: &str) {
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "not_cancellable", "{answer}");
    assert_eq!(answer["error"]["status"], state, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
}

/// `gateway_messages_cancelled_total{by, sender="s0"}`, 0 when absent.
fn cancelled_total(metrics: &str, by: &str) -> f64 {
    let by = format!("by=\"{by}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("gateway_messages_cancelled_total{"))
        .filter(|line| line.contains(&by) && line.contains("sender=\"s0\""))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn redis_len(gateway: &TestGateway, command: &str, key: &str) -> u64 {
    redis::cmd(command)
        .arg(key)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("redis answers")
}

/// Waits until sender s0 has nothing left in its streams or its schedule:
/// the worker has been through every message, cancelled ones included.
async fn wait_for_empty_queue(gateway: &TestGateway, deadline: Duration) {
    let pnid = phone_number_id(0);
    wait_until("s0's queue to empty", deadline, || async {
        let mut left = redis_len(gateway, "ZCARD", &gateway_queue::keys::scheduled(&pnid)).await;
        for lane in [
            gateway_domain::Lane::Transactional,
            gateway_domain::Lane::Bulk,
        ] {
            left += redis_len(gateway, "XLEN", &gateway_queue::keys::stream(&pnid, lane)).await;
        }
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_send_wins_and_one_after_it_is_refused() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let callbacks = SignedReceiver::default();
    // Callbacks are signed with the key of the client that sent the message.
    let callback_url = callbacks.start(KEY_ALL).await;
    let hooked = |to: &str, order: &str| {
        with(
            template(to),
            json!({"callback_url": callback_url, "metadata": {"order": order}}),
        )
    };

    // No worker runs yet: nothing is sent before the cancels.
    let scheduled_message = with(
        hooked("+16505550001", "scheduled"),
        json!({"send_after": rfc3339_in(Duration::from_secs(3))}),
    );
    let (status, answer) = gateway.send(&scheduled_message).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "scheduled", "{answer}");
    let scheduled = answer["id"].as_str().expect("id").to_owned();
    // Due after the cancelled one: once it is sent, the worker met that one.
    let later = queue(
        &gateway,
        &with(
            template("+16505550002"),
            json!({"send_after": rfc3339_in(Duration::from_secs(4))}),
        ),
    )
    .await;
    let queued = queue(&gateway, &hooked("+16505550003", "queued")).await;
    let by_cli = queue(&gateway, &hooked("+16505550004", "cli")).await;
    let goes = queue(&gateway, &template("+16505550005")).await;
    // A template the sandbox does not know (132001, a permanent failure),
    // queued before a worker has read the template registry (after, /send
    // refuses it itself).
    let mut broken = template("+16505550006");
    broken["template"]["name"] = "no_such_template".into();
    let broken = queue(&gateway, &broken).await;
    let bulk_lane = queue(
        &gateway,
        &with(template("+16505550007"), json!({"priority": "bulk"})),
    )
    .await;
    assert!(bulk_lane.contains("-b"), "{bulk_lane}");

    // Another client's message answers exactly like an unknown one, and
    // stays as it was.
    let unknown = format!("{}-1-0", phone_number_id(0));
    for id in [
        scheduled.as_str(),
        queued.as_str(),
        unknown.as_str(),
        "not-an-id",
    ] {
        let (code, answer) =
            cancel(&gateway, id, if id == unknown { KEY_ALL } else { KEY_ONE }).await;
        assert_eq!(code, 404, "{id}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{id}: {answer}");
    }
    let (code, answer) = cancel(&gateway, "not-an-id", KEY_ALL).await;
    assert_eq!(code, 404, "{answer}");
    let (code, _) = gateway.delete(&format!("/messages/{queued}"), None).await;
    assert_eq!(code, 401);
    assert_eq!(status_of(&gateway, &scheduled).await, "scheduled");
    assert_eq!(status_of(&gateway, &queued).await, "queued");

    // The cancel wins over a send not begun; cancelling again answers the same.
    for id in [&scheduled, &queued, &bulk_lane] {
        for _ in 0..2 {
            let (code, answer) = cancel(&gateway, id, KEY_ALL).await;
            assert_eq!(code, 200, "{answer}");
            assert_eq!(answer, json!({"id": id, "status": "cancelled"}));
        }
        let (_, record) = gateway.message(id).await;
        assert_cancelled(&record);
    }
    let (_, record) = gateway.message(&queued).await;
    assert_eq!(history(&record), ["queued", "cancelled"], "{record}");

    // The ops command does the same, for any sender, without a key.
    let (ok, out) = gateway.command(BINARY, &["message", "cancel", &by_cli, "--json"]);
    assert!(ok, "{out}");
    assert_eq!(parse(&out), json!({"id": by_cli, "status": "cancelled"}));
    let (ok, out) = gateway.command(BINARY, &["message", "cancel", &by_cli]);
    assert!(ok, "cancelling twice succeeds: {out}");
    let (_, record) = gateway.message(&by_cli).await;
    assert_cancelled(&record);

    gateway.start_worker().await;
    let sent_record = gateway
        .wait_for_status(&goes, "sent", Duration::from_secs(15))
        .await;
    gateway
        .wait_for_status(&later, "sent", Duration::from_secs(20))
        .await;
    wait_for_empty_queue(&gateway, Duration::from_secs(15)).await;
    let cancelled = [&scheduled, &queued, &by_cli, &bulk_lane];
    for id in cancelled {
        assert_eq!(times_sent(&gateway, id), 0, "cancelled {id} was sent");
        let (_, record) = gateway.message(id).await;
        assert_cancelled(&record);
    }
    let sent: HashSet<String> = send_counts(&gateway.sandbox.accepted())
        .into_keys()
        .collect();
    assert_eq!(sent, HashSet::from([goes.clone(), later.clone()]));

    // Each callback heard `cancelled`, signed, with its metadata; and nothing else.
    let events = wait_until(
        "the cancelled events at the callback",
        Duration::from_secs(20),
        || async {
            let bodies = callbacks.bodies();
            let ids: HashSet<&str> = bodies
                .iter()
                .filter_map(|b| b["message_id"].as_str())
                .collect();
            (ids.len() >= 3).then_some(bodies)
        },
    )
    .await;
    for (id, order) in [
        (&scheduled, "scheduled"),
        (&queued, "queued"),
        (&by_cli, "cli"),
    ] {
        let event = events
            .iter()
            .find(|e| e["message_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no event for {id}: {events:?}"));
        assert_eq!(event["type"], "status", "{event}");
        assert_eq!(event["status"], "cancelled", "{event}");
        assert_eq!(event["sender"], "s0", "{event}");
        assert_eq!(event["metadata"], json!({"order": order}), "{event}");
    }
    assert!(
        events.iter().all(|e| e["status"] == "cancelled"
            && cancelled.iter().any(|id| e["message_id"] == id.as_str())),
        "{events:?}"
    );
    assert_eq!(callbacks.forged(), 0);

    // The send wins over a cancel that comes after it: 409, nothing changes.
    let (code, answer) = cancel(&gateway, &goes, KEY_ALL).await;
    assert_not_cancellable(code, &answer, "sent");
    let (_, record) = gateway.message(&goes).await;
    assert_eq!(record, sent_record);
    let (ok, out) = gateway.command(BINARY, &["message", "cancel", &goes]);
    assert!(!ok, "{out}");
    assert!(out.contains("sent"), "{out}");
    let (_, record) = gateway.message(&goes).await;
    assert_eq!(record, sent_record);
    let (ok, out) = gateway.command(BINARY, &["message", "cancel", &unknown]);
    assert!(!ok, "{out}");
    assert!(out.contains("no message has id"), "{out}");
    assert_eq!(times_sent(&gateway, &goes), 1);
    let failed_record = gateway
        .wait_for_status(&broken, "failed", Duration::from_secs(15))
        .await;
    let (code, answer) = cancel(&gateway, &broken, KEY_ALL).await;
    assert_not_cancellable(code, &answer, "failed");
    assert_eq!(gateway.message(&broken).await.1, failed_record);

    // The api counted its own three cancels (the command's ran in its own process).
    let metrics = gateway.api_metrics().await;
    assert_eq!(cancelled_total(&metrics, "request"), 3.0, "{metrics}");
    assert_eq!(cancelled_total(&metrics, "bulk"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_message_is_cancelled_and_one_being_sent_is_not() {
    let gateway = TestGateway::start(GatewayOptions::default()).await;
    let pnid = phone_number_id(0);

    // Retrying: Meta answers 500 to this recipient until told otherwise.
    let failing = "+16505550011";
    gateway.sandbox.set_faults(Faults {
        failing_recipients: vec![failing.to_owned()],
        ..Faults::default()
    });
    let retrying = queue(&gateway, &template(failing)).await;
    gateway
        .wait_for_status(&retrying, "retrying", Duration::from_secs(15))
        .await;
    let (code, answer) = cancel(&gateway, &retrying, KEY_ALL).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer, json!({"id": retrying, "status": "cancelled"}));
    let (_, record) = gateway.message(&retrying).await;
    assert_cancelled(&record);
    assert!(
        history(&record).contains(&"retrying".to_owned()),
        "{record}"
    );
    gateway.sandbox.set_faults(Faults::default());
    // Its next attempt (1 to 2 s on) finds it cancelled: it leaves the
    // stream without a call.
    wait_for_empty_queue(&gateway, Duration::from_secs(15)).await;
    assert_eq!(times_sent(&gateway, &retrying), 0);
    let (_, record) = gateway.message(&retrying).await;
    assert_cancelled(&record);

    // Being sent: Meta takes 2 s to answer, and the claim holds meanwhile.
    gateway.sandbox.set_faults(Faults {
        latency_ms: 2_000,
        ..Faults::default()
    });
    let slow = queue(
        &gateway,
        &with(
            template("+16505550012"),
            json!({"metadata": {"campaign": "slow"}}),
        ),
    )
    .await;
    let fate = gateway_queue::keys::fate(&pnid, &slow);
    wait_until(
        "the send to be claimed",
        Duration::from_secs(10),
        || async {
            let fate: Option<String> = redis::cmd("GET")
                .arg(&fate)
                .query_async(&mut gateway.redis().await)
                .await
                .expect("GET");
            (fate.as_deref() == Some("sending")).then_some(())
        },
    )
    .await;
    let (code, answer) = cancel(&gateway, &slow, KEY_ALL).await;
    assert_not_cancellable(code, &answer, "sending");
    // A bulk cancel that matches it waits for the send to end, and counts it.
    let asked = Instant::now();
    let (code, answer) = cancel_matching(
        &gateway,
        KEY_ALL,
        &json!({"from": "s0", "metadata": {"campaign": "slow"}}),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer, json!({"cancelled": 0, "sent_meanwhile": 1}));
    assert!(
        asked.elapsed() < Duration::from_secs(7),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status_of(&gateway, &slow).await, "sent");
    assert_eq!(times_sent(&gateway, &slow), 1);
    let (code, answer) = cancel(&gateway, &slow, KEY_ALL).await;
    assert_not_cancellable(code, &answer, "sent");
    gateway.sandbox.set_faults(Faults::default());

    // Bad filters are refused, naming the field, and cancel nothing.
    let spring = queue(
        &gateway,
        &with(
            template("+16505550013"),
            json!({"send_after": rfc3339_in(Duration::from_secs(3_600)),
                   "metadata": {"campaign": "spring"}}),
        ),
    )
    .await;
    let spring_bulk = queue(
        &gateway,
        &with(
            template("+16505550015"),
            json!({"send_after": rfc3339_in(Duration::from_secs(3_600)),
                   "metadata": {"campaign": "spring", "wave": 2}, "priority": "bulk"}),
        ),
    )
    .await;
    let too_many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!(i))).collect();
    for (body, field) in [
        (json!({"from": "s0"}), "metadata"),
        (json!({"from": "s0", "metadata": {}}), "metadata"),
        (json!({"from": "s0", "metadata": too_many}), "metadata"),
        (
            json!({"from": "s0", "metadata": {"campaign": {"name": "spring"}}}),
            "metadata.campaign",
        ),
        (
            json!({"from": "s0", "metadata": {"campaign": ["spring"]}}),
            "metadata.campaign",
        ),
        (
            json!({"from": "s0", "metadata": {"campaign": null}}),
            "metadata.campaign",
        ),
    ] {
        let (code, answer) = cancel_matching(&gateway, KEY_ALL, &body).await;
        assert_eq!(code, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let filter = json!({"from": "s0", "metadata": {"campaign": "spring"}});
    let (code, _) = gateway
        .post("/messages/cancel", None, filter.to_string().into_bytes())
        .await;
    assert_eq!(code, 401);
    let (code, answer) = gateway
        .post("/messages/cancel", Some(KEY_ALL), b"{not json".to_vec())
        .await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(status_of(&gateway, &spring).await, "scheduled");
    // A number is not the string that looks like it.
    let (code, answer) = cancel_matching(
        &gateway,
        KEY_ALL,
        &json!({"from": "s0", "metadata": {"campaign": 1}}),
    )
    .await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"cancelled": 0, "sent_meanwhile": 0}))
    );
    // The good filter takes scheduled messages too, in either lane.
    let (code, answer) = cancel_matching(&gateway, KEY_ALL, &filter).await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"cancelled": 2, "sent_meanwhile": 0}))
    );
    for id in [&spring, &spring_bulk] {
        let (_, record) = gateway.message(id).await;
        assert_cancelled(&record);
    }

    // Past sent: once Meta's statuses say read, the refusal names that.
    gateway.sandbox.set_webhook(Some(WebhookTarget::new(
        format!("{}/webhook", gateway.api_url),
        APP_SECRET,
    )));
    let read = queue(&gateway, &template("+16505550014")).await;
    let read_record = gateway
        .wait_for_status(&read, "read", Duration::from_secs(20))
        .await;
    let (code, answer) = cancel(&gateway, &read, KEY_ALL).await;
    assert_not_cancellable(code, &answer, "read");
    assert_eq!(gateway.message(&read).await.1, read_record);

    let metrics = gateway.api_metrics().await;
    assert_eq!(cancelled_total(&metrics, "request"), 1.0, "{metrics}");
    assert_eq!(cancelled_total(&metrics, "bulk"), 2.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_message_is_cancelled_and_never_sent() {
    // A portfolio that may start one conversation per 3 s: the second
    // template to a new user is held until the first leaves the window.
    let gateway = TestGateway::start(GatewayOptions {
        extra_toml: "[portfolios]\n\"5000\" = { wabas = [\"2000\"], limit_override = 1, window_seconds = 3 }\n".into(),
        ..Default::default()
    })
    .await;
    let first = queue(&gateway, &template("+16505550021")).await;
    gateway
        .wait_for_status(&first, "sent", Duration::from_secs(10))
        .await;
    let held = queue(&gateway, &template("+16505550022")).await;
    gateway
        .wait_for_status(&held, "held", Duration::from_secs(10))
        .await;
    let next = queue(&gateway, &template("+16505550023")).await;
    let (code, answer) = cancel(&gateway, &held, KEY_ALL).await;
    assert_eq!(code, 200, "{answer}");
    let (_, record) = gateway.message(&held).await;
    assert_cancelled(&record);
    assert!(history(&record).contains(&"held".to_owned()), "{record}");

    // The window moves on (3 s, plus the longest call the gateway allows
    // for: about 8.5 s after the first send): the next message goes, the
    // cancelled one never.
    gateway
        .wait_for_status(&next, "sent", Duration::from_secs(30))
        .await;
    wait_for_empty_queue(&gateway, Duration::from_secs(10)).await;
    assert_eq!(times_sent(&gateway, &held), 0);
    assert_cancelled(&gateway.message(&held).await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_the_worker_end_in_exactly_one_of_cancelled_or_sent() {
    const MESSAGES: usize = 200;
    // At 50 a second the worker takes about 4 s to drain the queue; each
    // message's cancel comes at a scattered time within its first 3 s (a
    // fixed permutation of 15 ms steps). Early messages are mostly picked
    // up before their cancel and late ones mostly not, and in between the
    // two interleave: cancels land just before, during and just after the
    // worker's claim, on messages read ahead into its memory and not yet.
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        rate_per_second: 50,
        ..Default::default()
    })
    .await;
    let messages: Vec<Value> = (0..MESSAGES)
        .map(|i| template(&format!("+1650777{i:04}")))
        .collect();
    let ids = gateway.send_all(&messages).await;

    gateway.start_worker().await;
    let cancels: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (http, api_url, id) = (gateway.http.clone(), gateway.api_url.clone(), id.clone());
            tokio::spawn(async move {
                let step = (i * 73) % MESSAGES; // 73 is prime to 200: each step once
                tokio::time::sleep(Duration::from_millis(15 * step as u64)).await;
                delete_from(&http, &api_url, &format!("/messages/{id}"), Some(KEY_ALL)).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(MESSAGES);
    for cancel in cancels {
        answers.push(cancel.await.expect("the cancel ran"));
    }
    wait_for_empty_queue(&gateway, Duration::from_secs(30)).await;

    let counts = send_counts(&gateway.sandbox.accepted());
    let (mut cancelled, mut sent) = (0, 0);
    for (id, (code, answer)) in ids.iter().zip(&answers) {
        let times = counts.get(id).copied().unwrap_or(0);
        let (_, record) = gateway.message(id).await;
        match code {
            200 => {
                assert_eq!(answer, &json!({"id": id, "status": "cancelled"}));
                assert_cancelled(&record);
                assert_eq!(times, 0, "{id} was cancelled and sent: {record}");
                cancelled += 1;
            }
            409 => {
                assert_eq!(answer["error"]["code"], "not_cancellable", "{answer}");
                assert!(
                    matches!(answer["error"]["status"].as_str(), Some("sending" | "sent")),
                    "{answer}"
                );
                assert_eq!(record["status"], "sent", "{id}: {record}");
                assert!(
                    !history(&record).contains(&"cancelled".to_owned()),
                    "{record}"
                );
                assert_eq!(times, 1, "{id} was refused a cancel but sent {times} times");
                sent += 1;
            }
            _ => panic!("the cancel of {id} answered {code}: {answer}"),
        }
    }
    assert_eq!(cancelled + sent, MESSAGES);
    assert_eq!(
        counts.values().sum::<usize>(),
        sent,
        "only the refused were sent"
    );
    assert!(
        cancelled > 0 && sent > 0,
        "{cancelled} cancelled, {sent} sent"
    );
    let metrics = gateway.api_metrics().await;
    assert_eq!(
        cancelled_total(&metrics, "request"),
        cancelled as f64,
        "{metrics}"
    );
    // In queue order: c cancelled, s refused as sent, w refused while sending.
    let outcomes: String = answers
        .iter()
        .map(
            |(code, answer)| match (code, answer["error"]["status"].as_str()) {
                (200, _) => 'c',
                (_, Some("sending")) => 'w',
                _ => 's',
            },
        )
        .collect();
    eprintln!("race: {cancelled} cancelled, {sent} sent: {outcomes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_cancel_stops_a_campaign_mid_drain() {
    const SPRING: usize = 300;
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        rate_per_second: 40,
        ..Default::default()
    })
    .await;
    // A spring campaign with an autumn message after every tenth, both at
    // bulk priority, as campaigns go.
    let mut messages = Vec::new();
    let mut is_spring = Vec::new();
    for i in 0..SPRING {
        messages.push(with(
            template(&format!("+1650888{i:04}")),
            json!({"metadata": {"campaign": "spring", "n": i}, "priority": "bulk"}),
        ));
        is_spring.push(true);
        if i % 10 == 9 {
            messages.push(with(
                template(&format!("+1650999{i:04}")),
                json!({"metadata": {"campaign": "autumn"}, "priority": "bulk"}),
            ));
            is_spring.push(false);
        }
    }
    let ids = gateway.send_all(&messages).await;
    let spring: Vec<String> = ids
        .iter()
        .zip(&is_spring)
        .filter(|(_, s)| **s)
        .map(|(id, _)| id.clone())
        .collect();
    let autumn: Vec<String> = ids
        .iter()
        .zip(&is_spring)
        .filter(|(_, s)| !**s)
        .map(|(id, _)| id.clone())
        .collect();

    // Another client (allowed the same sender) cancels none of them.
    let filter = json!({"from": "s0", "metadata": {"campaign": "spring"}});
    let (code, answer) = cancel_matching(&gateway, KEY_ONE, &filter).await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"cancelled": 0, "sent_meanwhile": 0}))
    );
    let (code, answer) = cancel(&gateway, &spring[0], KEY_ONE).await;
    assert_eq!(code, 404, "{answer}");
    assert_eq!(status_of(&gateway, &spring[0]).await, "queued");
    // Its own spring messages (transactional, so they go first) are not the
    // first client's to cancel.
    let theirs: Vec<Value> = (0..20)
        .map(|i| {
            with(
                template(&format!("+1650666{i:04}")),
                json!({"metadata": {"campaign": "spring"}}),
            )
        })
        .collect();
    let (code, answer) = gateway
        .post(
            "/send/batch",
            Some(KEY_ONE),
            json!({ "messages": theirs }).to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let theirs: Vec<String> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();

    let spring_set: HashSet<&str> = spring.iter().map(String::as_str).collect();
    let spring_sent = |gateway: &TestGateway| {
        send_counts(&gateway.sandbox.accepted())
            .keys()
            .filter(|id| spring_set.contains(id.as_str()))
            .count()
    };
    // Meta answers each send 300 ms after it arrives (the sandbox counts it
    // on arrival): at the cancel some sends are still under way, and the
    // cancel must wait for them.
    gateway.sandbox.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    gateway.start_worker().await;
    wait_until_every(
        "the campaign to be under way",
        Duration::from_secs(20),
        Duration::from_millis(5),
        || async { (spring_sent(&gateway) >= 40).then_some(()) },
    )
    .await;
    let before = spring_sent(&gateway);
    let asked = Instant::now();
    let (code, answer) = cancel_matching(&gateway, KEY_ALL, &filter).await;
    let at_answer = spring_sent(&gateway);
    let took = asked.elapsed();
    assert_eq!(code, 200, "{answer}");
    let cancelled = answer["cancelled"].as_u64().expect("cancelled") as usize;
    let sent_meanwhile = answer["sent_meanwhile"].as_u64().expect("sent_meanwhile") as usize;
    assert!(before < SPRING / 2, "the campaign was mid-drain: {before}");
    // The sends that had reached Meta but not its answer were waited for.
    assert!(sent_meanwhile > 0, "{answer}");
    // Accepted after the cancel's answer: not stopped by it.
    let late = queue(
        &gateway,
        &with(
            template("+16505550099"),
            json!({"metadata": {"campaign": "spring"}}),
        ),
    )
    .await;

    // Everything else drains, then the queue is empty: the worker has been
    // past every cancelled message.
    let mut others = autumn.clone();
    others.extend(theirs.iter().cloned());
    others.push(late.clone());
    let drained = Instant::now();
    wait_until_every(
        "the other messages to be sent",
        Duration::from_secs(40),
        Duration::from_millis(100),
        || async {
            let counts = send_counts(&gateway.sandbox.accepted());
            others
                .iter()
                .all(|id| counts.contains_key(id))
                .then_some(())
        },
    )
    .await;
    let drain_took = drained.elapsed();
    wait_for_empty_queue(&gateway, Duration::from_secs(30)).await;

    let counts = send_counts(&gateway.sandbox.accepted());
    let after = spring_sent(&gateway);
    assert_eq!(
        after, at_answer,
        "spring messages were sent after the cancel answered"
    );
    assert_eq!(
        cancelled + after,
        SPRING,
        "answer {answer}; {before} sent before the request, {at_answer} at its answer"
    );
    assert!(sent_meanwhile <= after, "{answer}; {after} sent in all");
    assert!(
        before + sent_meanwhile + cancelled >= SPRING - 40,
        "{answer}; {before} sent before the request"
    );
    for id in &spring {
        let times = counts.get(id).copied().unwrap_or(0);
        let (_, record) = gateway.message(id).await;
        match times {
            0 => assert_cancelled(&record),
            1 => assert_eq!(record["status"], "sent", "{record}"),
            _ => panic!("{id} was sent {times} times"),
        }
    }
    for id in others.iter().chain(&theirs) {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
    let metrics = gateway.api_metrics().await;
    assert_eq!(
        cancelled_total(&metrics, "bulk"),
        cancelled as f64,
        "{metrics}"
    );
    eprintln!(
        "bulk cancel: {before} spring sent before, {at_answer} at the answer ({took:?}), \
         answer {answer}; the rest drained in {drain_took:?}"
    );
}
