//! The business portfolio's messaging limit: unique users its numbers start
//! conversations with (templates outside an open window) in a moving 24 h
//! (shortened here), counted across its numbers and held beyond the limit,
//! then sent as the window moves on; replies inside an open window go at
//! once throughout. The limit Meta reports arrives by the
//! `business_capability_update` webhook. Real Redis, the sandbox over HTTP.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use gateway_sandbox::NumberHealthChange;
use gateway_tests::{GatewayOptions, TestGateway, phone_number_id, wait_until, wait_until_every};
use serde_json::{Value, json};

const PORTFOLIO: &str = "5000";
const WINDOW_SECONDS: u64 = 12;

fn user(i: usize) -> String {
    format!("+1650555{i:04}")
}

fn template_to(sender: usize, to: &str) -> Value {
    json!({
        "from": format!("s{sender}"),
        "to": to,
        "type": "template",
        "template": { "name": "hello_world", "language": { "code": "en_US" } },
    })
}

fn portfolio_toml(limit: &str) -> String {
    format!(
        "[portfolios]\n\"{PORTFOLIO}\" = {{ wabas = [\"2000\"], {limit}window_seconds = {WINDOW_SECONDS} }}\n"
    )
}

async fn status_of(gateway: &TestGateway, id: &str) -> String {
    let (_, record) = gateway.message(id).await;
    record["status"].as_str().unwrap_or_default().to_owned()
}

/// `Some` once every message is at least `sent`.
async fn all_sent<'a>(
    gateway: &TestGateway,
    ids: impl IntoIterator<Item = &'a String>,
) -> Option<()> {
    for id in ids {
        let status = status_of(gateway, id).await;
        if !matches!(status.as_str(), "sent" | "delivered" | "read") {
            return None;
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_beyond_the_portfolio_s_limit_are_held_until_the_window_moves_on() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        webhooks: true,
        extra_toml: portfolio_toml("limit_override = 250, "),
        ..Default::default()
    })
    .await;
    // Ten users write first: their windows are open, so messages to them
    // are replies and never count.
    let repliers: Vec<String> = (1000..1010).map(user).collect();
    for u in &repliers {
        gateway
            .sandbox
            .inbound(&phone_number_id(0), u, "hi")
            .expect("inbound");
    }
    let redis = gateway.redis().await;
    wait_until("the windows to open", Duration::from_secs(20), || {
        let mut redis = redis.clone();
        let keys: Vec<String> = repliers
            .iter()
            .map(|u| format!("gw:{{{}}}:window:{u}", phone_number_id(0)))
            .collect();
        async move {
            let open: i64 = redis::cmd("EXISTS")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .ok()?;
            (open == 10).then_some(())
        }
    })
    .await;

    // 400 templates to 400 users, over both numbers of the portfolio.
    let started = SystemTime::now();
    let messages: Vec<Value> = (0..400).map(|i| template_to(i % 2, &user(i))).collect();
    let ids = gateway.send_all(&messages).await;

    // 250 go; the other 150 are held, with the reason.
    let held: Vec<String> = wait_until_every(
        "250 sent and 150 held",
        Duration::from_secs(WINDOW_SECONDS - 2),
        Duration::from_millis(200),
        || async {
            let sent = gateway.sandbox.accepted().len();
            let mut held = Vec::new();
            for id in &ids {
                if status_of(&gateway, id).await == "held" {
                    held.push(id.clone());
                }
            }
            (sent == 250 && held.len() == 150).then_some(held)
        },
    )
    .await;
    let (_, record) = gateway.message(&held[0]).await;
    assert_eq!(record["error"]["title"], "messaging_limit", "{record}");

    // A reply inside an open window and a template to a user with an open
    // window go at once, beyond the limit.
    let mut reply =
        json!({"from": "s0", "to": repliers[0], "type": "text", "text": {"body": "thanks"}});
    let (status, body) = gateway.send(&reply).await;
    assert_eq!(status, 202, "{body}");
    let reply_id = body["id"].as_str().expect("id").to_owned();
    reply = template_to(0, &repliers[1]);
    let (status, body) = gateway.send(&reply).await;
    assert_eq!(status, 202, "{body}");
    let template_reply_id = body["id"].as_str().expect("id").to_owned();
    wait_until("the replies to be sent", Duration::from_secs(5), || {
        all_sent(&gateway, [&reply_id, &template_reply_id])
    })
    .await;
    let first_window_end = started + Duration::from_secs(WINDOW_SECONDS);
    assert!(
        SystemTime::now() < first_window_end,
        "the replies went within the first window"
    );

    // Once the window moves on, the held ones go too.
    wait_until_every(
        "the held messages to be sent",
        Duration::from_secs(WINDOW_SECONDS + 20),
        Duration::from_millis(500),
        || all_sent(&gateway, &held),
    )
    .await;
    // In no window of its length did the portfolio reach more than 250
    // users outside their windows.
    let replier_digits: HashSet<String> = repliers
        .iter()
        .map(|u| u.trim_start_matches('+').to_owned())
        .collect();
    let mut sends: Vec<(SystemTime, String)> = gateway
        .sandbox
        .accepted()
        .into_iter()
        .filter(|m| !replier_digits.contains(&m.recipient))
        .map(|m| (m.at, m.recipient))
        .collect();
    sends.sort();
    assert_eq!(sends.len(), 400);
    let window = Duration::from_secs(WINDOW_SECONDS);
    for (i, (start, _)) in sends.iter().enumerate() {
        let users: HashSet<&String> = sends[i..]
            .iter()
            .take_while(|(at, _)| at.duration_since(*start).unwrap_or_default() < window)
            .map(|(_, u)| u)
            .collect();
        assert!(
            users.len() <= 250,
            "{} users within one window",
            users.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_meta_reports_is_followed() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 1,
        webhooks: true,
        extra_toml: portfolio_toml(""),
        ..Default::default()
    })
    .await;
    let redis = gateway.redis().await;
    let limit_key = format!("gw:{{portfolio:{PORTFOLIO}}}:limit");
    let read_limit = || {
        let (mut redis, key) = (redis.clone(), limit_key.clone());
        async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<u64>>(&mut redis)
                .await
                .ok()
                .flatten()
        }
    };
    // The sandbox's number starts at TIER_2K; the worker's poll reads it.
    let polled = wait_until("the polled limit", Duration::from_secs(20), read_limit).await;
    assert_eq!(polled, 2_000);
    // Meta lowers it: the webhook says so.
    gateway
        .sandbox
        .change_number(
            &phone_number_id(0),
            NumberHealthChange {
                messaging_limit_tier: Some("TIER_250".into()),
                ..Default::default()
            },
        )
        .expect("change");
    wait_until("the new limit", Duration::from_secs(20), || async {
        (read_limit().await == Some(250)).then_some(())
    })
    .await;
    // A template counts against it; the gauges show both.
    let (status, body) = gateway.send(&template_to(0, &user(1))).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    wait_until(
        "the template to be sent",
        Duration::from_secs(10),
        || async { (status_of(&gateway, &id).await != "queued").then_some(()) },
    )
    .await;
    let text = gateway.metrics.render();
    assert!(
        text.contains(&format!(
            "gateway_portfolio_messaging_limit{{portfolio=\"{PORTFOLIO}\"}} 250"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "gateway_portfolio_unique_users{{portfolio=\"{PORTFOLIO}\"}} 1"
        )),
        "{text}"
    );
}
