//! The ops command line, run as the real binary against a test gateway:
//! `stats`, `message show`, `dlq purge`, `check-config`, and `--help` on
//! every command.

use std::time::Duration;

use gateway_tests::{GatewayOptions, TestGateway, phone_number_id};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(from: &str, to: &str, name: &str) -> Value {
    json!({"from": from, "to": to, "type": "template", "template": {"name": name, "language": {"code": "en_US"}}})
}

fn parse(output: &str) -> Value {
    serde_json::from_str(output).unwrap_or_else(|e| panic!("not JSON ({e}): {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_shows_a_backlog_no_worker_drains() {
    let options = GatewayOptions {
        senders: 2,
        start_worker: false,
        ..Default::default()
    };
    let mut gateway = TestGateway::start(options).await;
    gateway
        .send_all(&[
            template("s0", "+16505550001", "hello_world"),
            template("s0", "+16505550002", "hello_world"),
            template("s0", "+16505550003", "hello_world"),
        ])
        .await;
    let (ok, out) = gateway.command(
        BINARY,
        &["senders", "pause", "s1", "--reason", "maintenance"],
    );
    assert!(ok, "{out}");

    let (ok, out) = gateway.command(BINARY, &["stats", "--sender", "s0", "--json"]);
    assert!(ok, "{out}");
    let stats = parse(&out);
    let senders = stats["senders"].as_array().expect("senders");
    assert_eq!(senders.len(), 1, "{stats}");
    let s0 = &senders[0];
    assert_eq!(s0["name"], "s0");
    assert_eq!(s0["phone_number_id"], phone_number_id(0));
    assert_eq!(s0["depth"], 3, "{s0}");
    assert_eq!(s0["waiting"], 3, "{s0}");
    assert_eq!(s0["in_flight"], 0, "{s0}");
    assert_eq!(s0["transactional"]["depth"], 3, "{s0}");
    assert_eq!(s0["bulk"]["depth"], 0, "{s0}");
    assert!(s0["oldest_age_ms"].as_i64().is_some(), "{s0}");
    assert_eq!(s0["owner"], Value::Null, "no worker: {s0}");
    assert_eq!(s0["paused"], Value::Null, "{s0}");
    assert_eq!(s0["dead_letters"], 0, "{s0}");
    assert_eq!(s0["scheduled"], 0, "{s0}");
    assert_eq!(s0["rate_per_second"], 70, "{s0}");
    // No owner published a rate: the configured one; 3 ahead at 70/s.
    assert_eq!(s0["effective_rate"], 70, "{s0}");
    let wait = s0["predicted_wait_seconds"]["transactional"]
        .as_f64()
        .expect("predicted wait");
    assert!((wait - 3.0 / 70.0).abs() < 1e-9, "{s0}");
    assert_eq!(s0["max_queue_seconds"]["transactional"], 300, "{s0}");
    assert_eq!(stats["workers"], json!([]), "{stats}");
    assert_eq!(stats["webhook_events"], 0, "{stats}");
    assert_eq!(stats["notifications"]["queued"], 0, "{stats}");

    let (ok, out) = gateway.command(BINARY, &["stats", "--json"]);
    assert!(ok, "{out}");
    let stats = parse(&out);
    let s1 = &stats["senders"][1];
    assert_eq!(s1["name"], "s1");
    assert_eq!(s1["depth"], 0, "{s1}");
    assert_eq!(s1["paused"]["title"], "maintenance", "{s1}");
    assert_eq!(s1["paused"]["by"], "operator", "{s1}");

    let (ok, out) = gateway.command(BINARY, &["stats"]);
    assert!(ok, "{out}");
    assert!(out.contains("sender s0"), "{out}");
    assert!(
        out.contains("3 (transactional 3 waiting + 0 in flight"),
        "{out}"
    );
    assert!(out.contains("yes: maintenance"), "{out}");

    let (ok, out) = gateway.command(BINARY, &["stats", "--sender", "nobody"]);
    assert!(!ok, "{out}");
    assert!(out.contains("\"nobody\""), "{out}");

    // Redis gone: the error names the server.
    gateway.redis.stop();
    let (ok, out) = gateway.command(BINARY, &["stats"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("cannot reach Redis at {}", gateway.redis.url())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_show_prints_a_sent_message() {
    let gateway = TestGateway::start(GatewayOptions::default()).await;
    let (status, body) = gateway
        .send(&template("s0", "+16505550010", "hello_world"))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let record = gateway
        .wait_for_status(&id, "sent", Duration::from_secs(20))
        .await;
    let wamid = record["wamid"].as_str().expect("wamid").to_owned();

    let (ok, out) = gateway.command(BINARY, &["message", "show", &id]);
    assert!(ok, "{out}");
    assert!(out.contains(&wamid), "{out}");
    assert!(out.contains("status         sent"), "{out}");
    assert!(out.contains("queued"), "history: {out}");

    let (ok, out) = gateway.command(BINARY, &["message", "show", "--wamid", &wamid, "--json"]);
    assert!(ok, "{out}");
    let shown = parse(&out);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["wamid"], wamid.as_str());
    assert_eq!(shown["status"], "sent");
    assert_eq!(shown["attempts"], 1);
    assert_eq!(shown["fallback_used"], false);
    assert_eq!(shown["error"], Value::Null);
    let history = shown["history"].as_array().expect("history");
    assert_eq!(history.last().expect("an event")["status"], "sent");
    assert!(
        history
            .iter()
            .all(|e| e["at"].as_str().is_some_and(|at| at.ends_with('Z'))),
        "{shown}"
    );

    let unknown = format!("{}-1-0", phone_number_id(0));
    let (ok, out) = gateway.command(BINARY, &["message", "show", &unknown]);
    assert!(!ok, "{out}");
    assert!(out.contains("no message has id"), "{out}");
    let (ok, out) = gateway.command(BINARY, &["message", "show", "--wamid", "wamid.nothing"]);
    assert!(!ok, "{out}");
    assert!(out.contains("wamid.nothing"), "{out}");
    let (ok, out) = gateway.command(BINARY, &["message", "show", "not-an-id"]);
    assert!(!ok, "{out}");
    assert!(out.contains("not a message id"), "{out}");
}

fn dead_letter_ids(gateway: &TestGateway) -> Vec<String> {
    let (ok, out) = gateway.command(BINARY, &["dlq", "list", "--json"]);
    assert!(ok, "{out}");
    let mut ids: Vec<String> = parse(&out)
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_purge_deletes_exactly_the_named_dead_letters() {
    let options = GatewayOptions {
        senders: 2,
        start_worker: false,
        ..Default::default()
    };
    let mut gateway = TestGateway::start(options).await;
    // A template the sandbox does not know: 132001, a permanent failure.
    // Queued before a worker has read the template registry (after, /send
    // refuses it itself).
    let ids = gateway
        .send_all(&[
            template("s0", "+16505550021", "no_such_template"),
            template("s0", "+16505550022", "no_such_template"),
            template("s1", "+16505550023", "no_such_template"),
        ])
        .await;
    gateway.start_worker().await;
    for id in &ids {
        let record = gateway
            .wait_for_status(id, "failed", Duration::from_secs(30))
            .await;
        assert_eq!(record["error"]["code"], 132001, "{record}");
    }
    let mut all = ids.clone();
    all.sort();
    assert_eq!(dead_letter_ids(&gateway), all);
    let (ok, out) = gateway.command(BINARY, &["stats", "--sender", "s0", "--json"]);
    assert!(ok, "{out}");
    assert_eq!(parse(&out)["senders"][0]["dead_letters"], 2, "{out}");

    // Nothing named, nothing purged.
    let (ok, out) = gateway.command(BINARY, &["dlq", "purge"]);
    assert!(!ok, "{out}");
    assert!(out.contains("--all"), "{out}");
    let (ok, out) = gateway.command(BINARY, &["dlq", "purge", "--all", "--sender", "s0"]);
    assert!(!ok, "--all stands alone: {out}");
    assert_eq!(dead_letter_ids(&gateway).len(), 3);

    let (ok, out) = gateway.command(BINARY, &["dlq", "purge", "--id", &ids[0], "--json"]);
    assert!(ok, "{out}");
    assert_eq!(parse(&out)["purged"], 1, "{out}");
    assert_eq!(dead_letter_ids(&gateway), {
        let mut rest = vec![ids[1].clone(), ids[2].clone()];
        rest.sort();
        rest
    });

    // They failed just now: none is older than an hour.
    let (ok, out) = gateway.command(
        BINARY,
        &[
            "dlq",
            "purge",
            "--all",
            "--older-than-seconds",
            "3600",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(parse(&out)["purged"], 0, "{out}");

    let (ok, out) = gateway.command(BINARY, &["dlq", "purge", "--sender", "s1", "--json"]);
    assert!(ok, "{out}");
    let purged = parse(&out);
    assert_eq!(purged["purged"], 1, "{out}");
    assert_eq!(purged["senders"]["s1"], 1, "{out}");
    assert_eq!(dead_letter_ids(&gateway), vec![ids[1].clone()]);

    let (ok, out) = gateway.command(BINARY, &["dlq", "purge", "--all"]);
    assert!(ok, "{out}");
    assert!(out.contains("purged 1 dead letter"), "{out}");
    assert!(dead_letter_ids(&gateway).is_empty());
    // The records stay until they expire.
    let (status, record) = gateway.message(&ids[0]).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["status"], "failed");
}

const CHECKED_CONFIG: &str = r#"
[redis]
url = "redis://:redis-password-here@127.0.0.1:1/0"

[[senders]]
name = "alpha"
phone_number_id = "111"
waba_id = "222"
access_token_env = "OPS_TOKEN_ALPHA"

[[clients]]
name = "billing"
key_env = "OPS_KEY_BILLING"
senders = ["alpha"]

[[subscribers]]
name = "crm"
url = "https://crm.example/hooks"
secret_env = "OPS_SECRET_CRM"
"#;

/// Runs `check-config` on [`CHECKED_CONFIG`] with only these variables set.
fn check_config(dir: &tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, CHECKED_CONFIG).expect("write config");
    let output = std::process::Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn check_config_names_every_missing_variable_and_passes_with_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ok, out) = check_config(&dir, &[], &[]);
    assert!(!ok, "{out}");
    for variable in ["OPS_TOKEN_ALPHA", "OPS_KEY_BILLING", "OPS_SECRET_CRM"] {
        assert!(out.contains(variable), "{variable}: {out}");
    }

    // The api needs the client keys and the senders' tokens (for media),
    // not the subscribers' secrets.
    let (ok, out) = check_config(
        &dir,
        &[("OPS_KEY_BILLING", "client-key-value")],
        &["--role", "api"],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("OPS_TOKEN_ALPHA is not set (needed by the api)"),
        "{out}"
    );
    let (ok, out) = check_config(
        &dir,
        &[
            ("OPS_KEY_BILLING", "client-key-value"),
            ("OPS_TOKEN_ALPHA", "token-value-alpha"),
        ],
        &["--role", "api"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("ok"), "{out}");
    let (ok, out) = check_config(
        &dir,
        &[("OPS_KEY_BILLING", "client-key-value")],
        &["--role", "worker", "--json"],
    );
    assert!(!ok, "{out}");
    let report = parse(&out);
    assert_eq!(report["ok"], false);
    let variables: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["variable"].as_str())
        .collect();
    assert_eq!(variables, ["OPS_TOKEN_ALPHA", "OPS_SECRET_CRM"], "{report}");

    let secrets = [
        ("OPS_TOKEN_ALPHA", "token-value-alpha"),
        ("OPS_KEY_BILLING", "client-key-value"),
        ("OPS_SECRET_CRM", "subscriber-secret-value"),
    ];
    let (ok, out) = check_config(&dir, &secrets, &[]);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok"), "{out}");
    assert!(out.contains("alpha (111"), "{out}");
    assert!(out.contains("billing (senders alpha)"), "{out}");
    assert!(out.contains("crm (https://crm.example/hooks)"), "{out}");
    let (ok, out) = check_config(&dir, &secrets, &["--json"]);
    assert!(ok, "{out}");
    let report = parse(&out);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["summary"]["senders"][0]["name"], "alpha");
    assert_eq!(report["summary"]["clients"][0]["senders"], json!(["alpha"]));
    assert_eq!(report["summary"]["subscribers"][0]["name"], "crm");
    assert!(report["summary"]["listen"]["api"].is_string(), "{report}");
    for secret in [
        "token-value-alpha",
        "client-key-value",
        "subscriber-secret-value",
        "redis-password-here",
    ] {
        assert!(!out.contains(secret), "{secret} printed: {out}");
    }

    // A bad value is named by its key.
    let mut bad = secrets.to_vec();
    bad.push(("GATEWAY_SENDERS__0__RATE_PER_SECOND", "0"));
    let (ok, out) = check_config(&dir, &bad, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("senders[0].rate_per_second"), "{out}");
}

#[test]
fn every_command_answers_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["api"],
        &["worker"],
        &["sandbox"],
        &["dev"],
        &["senders"],
        &["senders", "pause"],
        &["senders", "resume"],
        &["dlq"],
        &["dlq", "list"],
        &["dlq", "replay"],
        &["dlq", "purge"],
        &["stats"],
        &["message"],
        &["message", "show"],
        &["check-config"],
    ];
    for command in commands {
        let output = std::process::Command::new(BINARY)
            .args(*command)
            .arg("--help")
            .output()
            .expect("run the binary");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{command:?} --help: {stdout}");
        assert!(stdout.contains("Usage: gateway"), "{command:?}: {stdout}");
    }
}

#[test]
fn urls_lose_their_passwords_and_times_read_as_rfc3339() {
    use gateway::commands::{redacted_url, rfc3339};
    assert_eq!(
        redacted_url("redis://user:pa55@redis.internal:6379/0"),
        "redis://user:***@redis.internal:6379/0"
    );
    assert_eq!(
        redacted_url("rediss://:pa55@redis:6380"),
        "rediss://:***@redis:6380"
    );
    assert_eq!(redacted_url("redis://pa55@redis"), "redis://***@redis");
    assert_eq!(
        redacted_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
    assert_eq!(
        redacted_url("unix:///run/redis.sock?db=1&password=pa55"),
        "unix:///run/redis.sock?db=1&password=***"
    );

    for ms in [
        0_i64,
        951_782_400_123,
        1_709_164_800_000,
        1_764_000_000_999,
        4_102_444_799_999,
    ] {
        let expected = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("time");
        let shown = rfc3339(ms);
        assert_eq!(shown.len(), "2000-01-01T00:00:00.000Z".len(), "{shown}");
        let parsed =
            time::OffsetDateTime::parse(&shown, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339");
        assert_eq!(parsed, expected, "{ms}: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_pause_stops_only_that_sender_until_resumed() {
    // Queued first: a paused sender refuses new messages (503).
    let mut gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let ids = gateway
        .send_all(&[
            template("s0", "+16505550031", "hello_world"),
            template("s1", "+16505550032", "hello_world"),
            template("s0", "+16505550033", "hello_world"),
        ])
        .await;
    let (ok, out) = gateway.command(BINARY, &["senders", "pause", "s1"]);
    assert!(ok, "{out}");
    gateway.start_worker().await;
    for id in [&ids[0], &ids[2]] {
        gateway
            .wait_for_status(id, "sent", Duration::from_secs(30))
            .await;
    }
    let paused_sends = || {
        gateway
            .sandbox
            .accepted()
            .iter()
            .filter(|m| m.phone_number_id == phone_number_id(1))
            .count()
    };
    assert_eq!(paused_sends(), 0, "the paused sender sent nothing");
    let (_, record) = gateway.message(&ids[1]).await;
    assert_eq!(record["status"], "queued", "{record}");

    let (ok, out) = gateway.command(BINARY, &["senders", "resume", "s1"]);
    assert!(ok, "{out}");
    gateway
        .wait_for_status(&ids[1], "sent", Duration::from_secs(45))
        .await;
    assert_eq!(paused_sends(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_queues_exactly_the_named_dead_letter() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    // Queued before a worker has read the template registry (after, /send
    // refuses an unknown template itself).
    let ids = gateway
        .send_all(&[
            template("s0", "+16505550041", "no_such_template"),
            template("s0", "+16505550042", "no_such_template"),
            template("s0", "+16505550043", "no_such_template"),
        ])
        .await;
    gateway.start_worker().await;
    for id in &ids {
        gateway
            .wait_for_status(id, "failed", Duration::from_secs(30))
            .await;
    }
    let history_len = |record: &Value| record["history"].as_array().map_or(0, Vec::len);
    let mut before = Vec::new();
    for id in &ids {
        before.push(history_len(&gateway.message(id).await.1));
    }

    let (ok, out) = gateway.command(BINARY, &["dlq", "replay", "--id", &ids[1], "--json"]);
    assert!(ok, "{out}");
    // The replayed message is tried again (the template is still unknown, so
    // it fails again); the other two are left alone.
    gateway_tests::wait_until(
        "the replayed message to fail again",
        Duration::from_secs(30),
        || async {
            let (_, record) = gateway.message(&ids[1]).await;
            (record["status"] == "failed" && history_len(&record) > before[1]).then_some(())
        },
    )
    .await;
    for i in [0, 2] {
        let (_, record) = gateway.message(&ids[i]).await;
        assert_eq!(history_len(&record), before[i], "{record}");
    }
    let tries = gateway.sandbox.stats().rejections.get(&132001).copied();
    assert_eq!(tries, Some(4), "three first tries and one replay");
}
