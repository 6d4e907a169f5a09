//! "Not now" at `/send`: a sender's line longer than its
//! `max_queue_seconds` (or than a message's `expires_at`) answers 429
//! `queue_full` with `Retry-After`; a paused sender answers 503; a client
//! over its quotas answers 429, exactly across api processes; each refusal
//! is counted per client. Real Redis, the sandbox, real processes.

use std::time::Duration;

use gateway_tests::{
    GatewayOptions, KEY_ALL, TestGateway, phone_number_id, wait_until, wait_until_every,
};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn text_to(n: usize) -> Value {
    json!({
        "from": "s0",
        "to": format!("+1650555{n:04}"),
        "type": "template",
        "template": { "name": "hello_world", "language": { "code": "en_US" } },
    })
}

/// `POST /send` with `key`; the status, the `Retry-After` header and the body.
async fn send_as(gateway: &TestGateway, key: &str, body: &Value) -> (u16, Option<u64>, Value) {
    send_to(&gateway.http, &gateway.api_url, key, body).await
}

async fn send_to(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<u64>, Value) {
    let response = http
        .post(format!("{url}/send"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("api answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn rfc3339_in(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_longer_than_max_queue_seconds_is_refused_until_it_drains() {
    // One sender at 10/s that may keep 5 s of transactional messages in line.
    let mut gateway = TestGateway::start(GatewayOptions {
        rate_per_second: 10,
        start_worker: false,
        extra_env: vec![(
            "GATEWAY_SENDERS__0__MAX_QUEUE_SECONDS".into(),
            "{ transactional = 5, bulk = 60 }".into(),
        )],
        ..Default::default()
    })
    .await;

    // 20 queued: 2 s of waiting. A message that expires within 1 s would
    // expire in line; one that has a minute goes in.
    for n in 0..20 {
        let (status, _, body) = send_as(&gateway, KEY_ALL, &text_to(n)).await;
        assert_eq!(status, 202, "{body}");
    }
    let mut expiring = text_to(100);
    expiring["expires_at"] = rfc3339_in(1).into();
    let (status, retry_after, body) = send_as(&gateway, KEY_ALL, &expiring).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "queue_full", "{body}");
    assert_eq!(body["error"]["field"], "expires_at", "{body}");
    assert_eq!(retry_after, Some(2), "{body}");
    expiring["expires_at"] = rfc3339_in(60).into();
    let (status, _, body) = send_as(&gateway, KEY_ALL, &expiring).await;
    assert_eq!(status, 202, "{body}");

    // Up to 5 s of line (51 ahead of the next at 10/s is 5.1 s): the rest
    // is refused with the predicted wait, and nothing of it is stored.
    let mut accepted = 21;
    let refused = loop {
        let (status, retry_after, body) = send_as(&gateway, KEY_ALL, &text_to(accepted)).await;
        if status != 202 {
            break (status, retry_after, body);
        }
        accepted += 1;
        assert!(accepted <= 60, "admission control never refused");
    };
    assert_eq!(accepted, 51, "51 ahead wait 5.1 s, over the 5 s allowed");
    let (status, retry_after, body) = refused;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "queue_full", "{body}");
    assert_eq!(retry_after, Some(6), "the predicted wait, 5.1 s: {body}");
    assert_eq!(body["error"]["retry_after"], 6, "{body}");
    assert_eq!(
        gateway.queue_len(0).await,
        51,
        "a refused message is not stored"
    );

    // Bulk has its own, longer limit (and waits behind transactional).
    let mut bulk = text_to(500);
    bulk["priority"] = "bulk".into();
    let (status, _, body) = send_as(&gateway, KEY_ALL, &bulk).await;
    assert_eq!(status, 202, "{body}");

    // A batch says so per item.
    let batch = json!({ "messages": [text_to(600), text_to(601)] });
    let (status, body) = gateway
        .post("/send/batch", Some(KEY_ALL), batch.to_string().into_bytes())
        .await;
    assert_eq!(status, 200, "{body}");
    for result in body["results"].as_array().expect("results") {
        assert_eq!(result["error"]["code"], "queue_full", "{result}");
        assert!(
            result["error"]["retry_after"].as_u64().is_some(),
            "{result}"
        );
    }

    // The worker drains the line at 10/s, and publishes the rate it keeps;
    // /send takes transactional messages again once the wait is under 5 s.
    gateway.start_worker().await;
    wait_until_every(
        "the api to accept again as the line drains",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (status, _, _) = send_as(&gateway, KEY_ALL, &text_to(700)).await;
            (status == 202).then_some(())
        },
    )
    .await;
    let mut redis = gateway.redis().await;
    let rate_key = format!("gw:{{{}}}:rate", phone_number_id(0));
    let published: u32 = wait_until(
        "the owner to publish its rate",
        Duration::from_secs(10),
        || {
            let (mut redis, rate_key) = (redis.clone(), rate_key.clone());
            async move {
                redis::cmd("GET")
                    .arg(&rate_key)
                    .query_async::<Option<u32>>(&mut redis)
                    .await
                    .ok()
                    .flatten()
            }
        },
    )
    .await;
    assert_eq!(published, 10, "the rate the owner keeps");
    let _ = &mut redis;

    // Refusals are counted per client and reason.
    let metrics = gateway.metrics.render();
    let refused_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_client_messages_refused_total")
                && l.contains("client=\"all\"")
                && l.contains("reason=\"queue_full\"")
        })
        .unwrap_or_default()
        .to_owned();
    let count: f64 = refused_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        count >= 4.0,
        "1 expiring + 1 single + 2 batch items: {refused_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sender_refuses_new_messages_with_its_reason() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let (ok, out) = gateway.command(
        BINARY,
        &["senders", "pause", "s0", "--reason", "token rotation"],
    );
    assert!(ok, "{out}");
    let (status, retry_after, body) = wait_until(
        "the api to see the pause",
        Duration::from_secs(5),
        || async {
            let answer = send_as(&gateway, KEY_ALL, &text_to(1)).await;
            (answer.0 != 202).then_some(answer)
        },
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "sender_paused", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("token rotation"), "{body}");
    assert_eq!(retry_after, Some(60), "{body}");

    let (ok, out) = gateway.command(BINARY, &["senders", "resume", "s0"]);
    assert!(ok, "{out}");
    wait_until(
        "the api to see the resume",
        Duration::from_secs(5),
        || async {
            let (status, _, _) = send_as(&gateway, KEY_ALL, &text_to(2)).await;
            (status == 202).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_quotas_hold_across_api_processes() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        extra_toml: "[[clients]]\nname = \"metered\"\nkey_env = \"KEY_METERED\"\n\
                     senders = [\"s0\"]\nrate_per_second = 5\nper_day = 12\n"
            .into(),
        extra_env: vec![("KEY_METERED".into(), "test-key-metered".into())],
        ..Default::default()
    })
    .await;
    // A second api process: the quota is kept in Redis, not per process.
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr")
    };
    let _other_api = gateway.spawn_api(BINARY, listen);
    let other_url = format!("http://{listen}");
    let http = reqwest::Client::new();
    wait_until(
        "the second api to answer",
        Duration::from_secs(20),
        || async {
            let ready = http.get(format!("{other_url}/healthz")).send().await.ok()?;
            ready.status().is_success().then_some(())
        },
    )
    .await;

    // A burst of 10 over both processes at once: 5 go, 5 are over the rate.
    let key = "test-key-metered";
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..10 {
        let url = if n % 2 == 0 {
            gateway.api_url.clone()
        } else {
            other_url.clone()
        };
        let http = http.clone();
        burst.spawn(async move { send_to(&http, &url, key, &text_to(n)).await });
    }
    let answers = burst.join_all().await;
    let accepted = answers
        .iter()
        .filter(|(status, _, _)| *status == 202)
        .count();
    // The burst may straddle a second: at most 5 within any one second.
    assert!((5..=10).contains(&accepted), "{answers:?}");
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(accepted + limited.len(), 10, "{answers:?}");
    for (_, retry_after, body) in &limited {
        assert_eq!(body["error"]["code"], "client_rate_limited", "{body}");
        assert_eq!(*retry_after, Some(1), "{body}");
    }

    // 12 a day, all processes together: the rest of the day is refused.
    let mut sent = accepted;
    let mut n = 100;
    let refusal = loop {
        n += 1;
        let url = if n % 2 == 0 {
            &gateway.api_url
        } else {
            &other_url
        };
        let (status, retry_after, body) = send_to(&http, url, key, &text_to(n)).await;
        match status {
            202 => sent += 1,
            429 if body["error"]["code"] == "client_rate_limited" => {
                // Wait as told, as a client would.
                let seconds = retry_after.expect("Retry-After");
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            _ => break (status, retry_after, body),
        }
        assert!(sent <= 12, "more than the daily quota was accepted");
    };
    assert_eq!(sent, 12);
    let (status, retry_after, body) = refusal;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "client_daily_quota", "{body}");
    let (hours, minutes, seconds) = time::OffsetDateTime::now_utc().time().as_hms();
    let to_midnight =
        86_400 - (u64::from(hours) * 3600 + u64::from(minutes) * 60 + u64::from(seconds));
    let retry_after = retry_after.expect("Retry-After");
    assert!(
        retry_after.abs_diff(to_midnight) <= 2,
        "until the UTC day ends ({to_midnight} s): {retry_after}"
    );
    // Another client on the same sender is not affected.
    let (status, _, body) = send_as(&gateway, KEY_ALL, &text_to(999)).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_through_one_sender_leaves_the_client_s_other_senders_alone() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        start_worker: false,
        extra_toml: "[[clients]]\nname = \"metered\"\nkey_env = \"KEY_METERED\"\n\
                     senders = [\"s0\", \"s1\"]\nsender_quotas = { s1 = { per_day = 2 } }\n"
            .into(),
        extra_env: vec![("KEY_METERED".into(), "test-key-metered".into())],
        ..Default::default()
    })
    .await;
    let from = |sender: &str, n: usize| {
        let mut body = text_to(n);
        body["from"] = sender.into();
        body
    };
    // In one batch: the first two through s1 go, the third is over s1's
    // day; s0 has no quota of its own.
    let batch = json!({ "messages": [from("s1", 1), from("s0", 2), from("s1", 3), from("s1", 4)] });
    let response = gateway
        .http
        .post(format!("{}/send/batch", gateway.api_url))
        .bearer_auth("test-key-metered")
        .json(&batch)
        .send()
        .await
        .expect("api answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let results = body["results"].as_array().expect("results");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("queued"))
        .collect();
    assert_eq!(
        codes,
        ["queued", "queued", "queued", "client_daily_quota"],
        "{body}"
    );
    assert_eq!(gateway.queue_len(1).await, 2, "two through s1");

    let (status, _, body) = send_as(&gateway, "test-key-metered", &from("s1", 5)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "client_daily_quota", "{body}");
    let (status, _, body) = send_as(&gateway, "test-key-metered", &from("s0", 6)).await;
    assert_eq!(status, 202, "{body}");
}
