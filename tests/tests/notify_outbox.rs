//! Notifications (`gateway-notify`) against a private redis-server and a
//! local receiver on 127.0.0.1: delivered signed, retried while the
//! receiver is down, dead-lettered and replayed, taken over after a worker
//! crash, never with the secret in Redis, and dropped (counted) rather than
//! stored once the backlog is full.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gateway_notify::{
    CallbackRules, Deliveries, DeliveryPolicy, Notification, NotifyMetrics, Outbox, Registry,
    Replay, SIGNATURE_HEADER, SecretString, Signers, TIMESTAMP_HEADER, Transport, verify,
};
use gateway_queue::KeyWatcher;
use gateway_tests::{RedisServer, wait_until};
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SIGNER: &str = "subscriber:crm";
const SECRET: &str = "notify-test-secret-8c1f0e2a";

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Received {
    body: String,
    signature_valid: bool,
    content_type: Option<String>,
    timestamp: Option<i64>,
    /// What the receiver answered.
    status: u16,
}

/// A local HTTP endpoint that checks signatures and answers `status`
/// (after `delay_ms`, if set); it records a request once it answers.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    hang_once: Arc<Mutex<Option<String>>>,
    seen: Arc<Mutex<Vec<Received>>>,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    /// A body whose first request is not answered for a long time.
    hang_once: Arc<Mutex<Option<String>>>,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let state = ReceiverState {
            status: Arc::new(AtomicU16::new(status)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            hang_once: Arc::new(Mutex::new(None)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            status: state.status,
            delay_ms: state.delay_ms,
            hang_once: state.hang_once,
            seen: state.seen,
            server,
        }
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// How many times each body was answered with a 2xx.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.seen() {
            if (200..300).contains(&r.status) {
                *counts.entry(r.body).or_default() += 1;
            }
        }
        counts
    }

    fn failed_answers(&self) -> usize {
        self.seen()
            .iter()
            .filter(|r| !(200..300).contains(&r.status))
            .count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let hang = {
        let mut hang_once = state.hang_once.lock().expect("lock");
        let matches = hang_once.as_deref().map(str::as_bytes) == Some(&body[..]);
        matches && hang_once.take().is_some()
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let timestamp = header(TIMESTAMP_HEADER).and_then(|t| t.parse::<i64>().ok());
    let signature_valid = match (timestamp, header(SIGNATURE_HEADER)) {
        (Some(ts), Some(sig)) => verify(SECRET.as_bytes(), ts, &body, &sig),
        _ => false,
    };
    let status = state.status.load(Ordering::SeqCst);
    state.seen.lock().expect("lock").push(Received {
        body: String::from_utf8_lossy(&body).into_owned(),
        signature_valid,
        content_type: header("content-type"),
        timestamp,
        status,
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn connect(redis: &RedisServer) -> ConnectionManager {
    redis::Client::open(redis.url())
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("redis connection")
}

fn signers() -> Signers {
    let mut signers = Signers::new();
    signers.insert(SIGNER, SecretString::from(SECRET));
    signers
}

/// The delivery clients, callbacks allowed to reach the local receiver.
fn http() -> Transport {
    let rules = CallbackRules {
        require_https: false,
        allow_private_addresses: true,
        ..CallbackRules::default()
    };
    Transport::new(rules, Duration::from_secs(5)).expect("http clients")
}

/// A policy for tests: quick retries, short timeouts.
fn quick_policy() -> DeliveryPolicy {
    DeliveryPolicy {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        concurrency: 8,
        claim_idle: Duration::from_secs(30),
        ..DeliveryPolicy::default()
    }
}

/// A delivery loop running in a task.
struct Worker {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start_worker(
    redis: &RedisServer,
    outbox: &Outbox,
    policy: DeliveryPolicy,
    consumer: &str,
    metrics: NotifyMetrics,
) -> Worker {
    let shutdown = CancellationToken::new();
    // A worker process has a key watcher of its own.
    let watcher = KeyWatcher::open(&redis.url(), Duration::from_secs(2), Duration::from_secs(2))
        .expect("key watcher");
    let task = tokio::spawn(gateway_notify::run(
        Deliveries {
            outbox: outbox.clone(),
            http: http(),
            signers: signers(),
            policy,
            consumer: consumer.to_owned(),
            metrics,
            watcher,
        },
        shutdown.clone(),
    ));
    Worker { shutdown, task }
}

impl Worker {
    /// Cancels and waits for `run` to return (it must, promptly).
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic");
    }
}

fn metrics() -> NotifyMetrics {
    NotifyMetrics::register(&Registry::new()).expect("metrics")
}

fn notification(url: &str, n: usize) -> Notification {
    Notification {
        url: url.to_owned(),
        signer: SIGNER.to_owned(),
        body: format!(r#"{{"event":"status","n":{n}}}"#),
    }
}

/// Entries read but not settled, across all consumers.
async fn pending_count(conn: &ConnectionManager) -> u64 {
    let reply: Value = redis::cmd("XPENDING")
        .arg(gateway_queue::keys::NOTIFY_OUTBOX)
        .arg(gateway_notify::outbox::CONSUMER_GROUP)
        .query_async(&mut conn.clone())
        .await
        .expect("XPENDING");
    match reply {
        Value::Array(parts) => match parts.first() {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or_default(),
            _ => 0,
        },
        _ => 0,
    }
}

/// Waits until nothing is queued, pending or retrying.
async fn wait_until_settled(outbox: &Outbox, conn: &ConnectionManager) {
    wait_until(
        "the outbox to be empty",
        Duration::from_secs(10),
        || async {
            let depth = outbox.depth().await.ok()?;
            (depth.queued == 0 && depth.retrying == 0 && pending_count(conn).await == 0)
                .then_some(depth)
        },
    )
    .await;
}

fn counter(registry: &Registry, name: &str, target: &str) -> f64 {
    labelled_counter(registry, name, "target", target)
}

fn labelled_counter(registry: &Registry, name: &str, label: &str, value: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label && l.value() == value)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_delivered_once_and_signed() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    let receiver = Receiver::start(200).await;
    let registry = Registry::new();
    let metrics = NotifyMetrics::register(&registry).expect("metrics");

    let n = notification(&receiver.url, 1);
    outbox.push(&n).await.expect("push");
    let worker = start_worker(&redis, &outbox, quick_policy(), "w1", metrics);

    wait_until("the delivery", Duration::from_secs(10), || async {
        receiver.delivered().contains_key(&n.body).then_some(())
    })
    .await;
    wait_until_settled(&outbox, &conn).await;
    worker.stop().await;

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let request = &seen[0];
    assert_eq!(request.body, n.body);
    assert!(request.signature_valid, "{request:?}");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let timestamp = request.timestamp.expect("timestamp header");
    assert!(
        (i64::try_from(now).expect("now") - timestamp).abs() < 60,
        "{timestamp}"
    );
    assert_eq!(
        counter(&registry, "gateway_notifications_delivered_total", SIGNER),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wait_out_a_receiver_that_is_down() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    let receiver = Receiver::start(503).await;
    const COUNT: usize = 20;
    let bodies: Vec<String> = (0..COUNT)
        .map(|i| notification(&receiver.url, i).body)
        .collect();
    for i in 0..COUNT {
        outbox
            .push(&notification(&receiver.url, i))
            .await
            .expect("push");
    }
    let worker = start_worker(&redis, &outbox, quick_policy(), "w1", metrics());

    // Down long enough that every notification failed at least twice.
    wait_until("failed attempts", Duration::from_secs(10), || async {
        (receiver.failed_answers() >= 2 * COUNT).then_some(())
    })
    .await;
    let depth = outbox.depth().await.expect("depth");
    assert_eq!(depth.dead, 0, "{depth:?}");
    receiver.answer(200);

    wait_until(
        "every notification delivered",
        Duration::from_secs(10),
        || async {
            let delivered = receiver.delivered();
            bodies
                .iter()
                .all(|b| delivered.contains_key(b))
                .then_some(())
        },
    )
    .await;
    wait_until_settled(&outbox, &conn).await;
    worker.stop().await;

    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), COUNT, "{delivered:?}");
    assert!(receiver.seen().iter().all(|r| r.signature_valid));
    assert_eq!(outbox.depth().await.expect("depth").dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_backlog_cap_new_notifications_are_dropped_and_counted() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let registry = Registry::new();
    let metrics = NotifyMetrics::register(&registry).expect("metrics");
    let outbox = Outbox::new(conn.clone()).with_max_backlog(3, &metrics);
    let dropped = || {
        labelled_counter(
            &registry,
            "gateway_notifications_dropped_total",
            "reason",
            "backlog",
        )
    };
    let receiver = Receiver::start(503).await;
    // Retries wait long: what waits for one counts against the cap too.
    let slow_retries = DeliveryPolicy {
        initial_backoff: Duration::from_secs(600),
        max_backoff: Duration::from_secs(600),
        ..quick_policy()
    };

    // The receiver is down: the first notification fails and waits to be
    // retried; then no worker delivers anything.
    let first = notification(&receiver.url, 1);
    outbox.push(&first).await.expect("push");
    let worker = start_worker(&redis, &outbox, slow_retries.clone(), "w1", metrics.clone());
    wait_until(
        "the first to wait for a retry",
        Duration::from_secs(10),
        || async {
            let depth = outbox.depth().await.ok()?;
            (depth.retrying == 1 && depth.queued == 0).then_some(())
        },
    )
    .await;
    worker.stop().await;

    // Two more fit under the cap of 3; the next two are dropped.
    let all: Vec<Notification> = (2..=5).map(|i| notification(&receiver.url, i)).collect();
    for n in &all {
        outbox
            .push(n)
            .await
            .expect("a dropped push is not an error");
    }
    let depth = outbox.depth().await.expect("depth");
    assert_eq!((depth.queued, depth.retrying), (2, 1), "{depth:?}");
    assert_eq!(dropped(), 2.0);

    // The receiver is back: what was stored is delivered, which makes room
    // for a new one; the dropped never arrive.
    receiver.answer(200);
    let worker = start_worker(&redis, &outbox, slow_retries, "w2", metrics.clone());
    let stored = [&all[0], &all[1]];
    wait_until(
        "the stored ones delivered",
        Duration::from_secs(10),
        || async {
            let delivered = receiver.delivered();
            stored
                .iter()
                .all(|n| delivered.contains_key(&n.body))
                .then_some(())
        },
    )
    .await;
    wait_until("room in the outbox", Duration::from_secs(10), || async {
        let depth = outbox.depth().await.ok()?;
        (depth.queued == 0).then_some(())
    })
    .await;
    let later = notification(&receiver.url, 6);
    outbox.push(&later).await.expect("push");
    wait_until(
        "the later one delivered",
        Duration::from_secs(10),
        || async { receiver.delivered().contains_key(&later.body).then_some(()) },
    )
    .await;
    worker.stop().await;

    let delivered = receiver.delivered();
    for n in &all[2..] {
        assert!(!delivered.contains_key(&n.body), "{n:?} was dropped");
    }
    assert_eq!(dropped(), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_never_succeeds_is_dead_lettered_and_can_be_replayed() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    let receiver = Receiver::start(500).await;
    let policy = DeliveryPolicy {
        max_attempts: 3,
        ..quick_policy()
    };
    let n = notification(&receiver.url, 7);
    outbox.push(&n).await.expect("push");
    let worker = start_worker(&redis, &outbox, policy, "w1", metrics());

    let dead = wait_until("the dead letter", Duration::from_secs(10), || async {
        outbox.dead_letters(10).await.ok().filter(|d| !d.is_empty())
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].notification, n);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error, "HTTP 500");
    assert_eq!(receiver.failed_answers(), 3);
    wait_until_settled(&outbox, &conn).await;

    receiver.answer(200);
    assert_eq!(outbox.replay_dead(Replay::All).await.expect("replay"), 1);
    wait_until("the replayed delivery", Duration::from_secs(10), || async {
        receiver.delivered().contains_key(&n.body).then_some(())
    })
    .await;
    wait_until_settled(&outbox, &conn).await;
    worker.stop().await;
    assert!(outbox.dead_letters(10).await.expect("dead").is_empty());
    assert_eq!(receiver.delivered().get(&n.body), Some(&1));
    // Nothing left to replay.
    assert_eq!(outbox.replay_dead(Replay::All).await.expect("replay"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_not_listening_counts_as_a_failed_attempt() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    // A port that was free a moment ago: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address");
    let url = format!("http://{closed}/hook?token=in-the-url");
    let policy = DeliveryPolicy {
        max_attempts: 2,
        ..quick_policy()
    };
    outbox.push(&notification(&url, 1)).await.expect("push");
    let worker = start_worker(&redis, &outbox, policy, "w1", metrics());
    let dead = wait_until("the dead letter", Duration::from_secs(10), || async {
        outbox.dead_letters(10).await.ok().filter(|d| !d.is_empty())
    })
    .await;
    worker.stop().await;
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].last_error.starts_with("connection failed"),
        "{}",
        dead[0].last_error
    );
    assert!(
        !dead[0].last_error.contains("in-the-url"),
        "{}",
        dead[0].last_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_signer_is_dead_at_once_and_replay_by_id_works() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    let receiver = Receiver::start(200).await;
    let n = Notification {
        signer: "client:removed".to_owned(),
        ..notification(&receiver.url, 1)
    };
    outbox.push(&n).await.expect("push");
    let worker = start_worker(&redis, &outbox, quick_policy(), "w1", metrics());

    let dead = wait_until("the dead letter", Duration::from_secs(10), || async {
        outbox.dead_letters(10).await.ok().filter(|d| !d.is_empty())
    })
    .await;
    assert_eq!(dead[0].attempts, 0);
    assert!(
        dead[0]
            .last_error
            .contains("unknown signer `client:removed`"),
        "{}",
        dead[0].last_error
    );
    assert!(receiver.seen().is_empty());
    worker.stop().await;

    assert_eq!(
        outbox
            .replay_dead(Replay::Ids(vec!["not-an-id".to_owned(), "1-0".to_owned()]))
            .await
            .expect("replay"),
        0
    );
    assert_eq!(
        outbox
            .replay_dead(Replay::Ids(vec![dead[0].id.clone()]))
            .await
            .expect("replay"),
        1
    );
    assert_eq!(outbox.depth().await.expect("depth").queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_s_notifications_are_delivered_by_another() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    let receiver = Receiver::start(200).await;
    // Slow answers, so the first worker is killed with POSTs in flight, and
    // one that is surely in flight then.
    receiver.delay_ms.store(300, Ordering::SeqCst);
    *receiver.hang_once.lock().expect("lock") = Some(notification(&receiver.url, 0).body);
    const COUNT: usize = 16;
    let bodies: Vec<String> = (0..COUNT)
        .map(|i| notification(&receiver.url, i).body)
        .collect();
    for i in 0..COUNT {
        outbox
            .push(&notification(&receiver.url, i))
            .await
            .expect("push");
    }
    let policy = DeliveryPolicy {
        concurrency: 4,
        claim_idle: Duration::from_millis(400),
        ..quick_policy()
    };
    let first = start_worker(&redis, &outbox, policy.clone(), "first", metrics());
    wait_until("some deliveries", Duration::from_secs(10), || async {
        (receiver.delivered().len() >= 2).then_some(())
    })
    .await;
    // A crash: no shutdown, the task and its POSTs are dropped where they are.
    first.task.abort();
    let _ = first.task.await;
    assert!(
        receiver.delivered().len() < COUNT,
        "the first worker finished before it was killed"
    );
    assert!(pending_count(&conn).await > 0, "nothing was in flight");

    receiver.delay_ms.store(0, Ordering::SeqCst);
    let second = start_worker(&redis, &outbox, policy, "second", metrics());
    wait_until(
        "every notification delivered",
        Duration::from_secs(10),
        || async {
            let delivered = receiver.delivered();
            bodies
                .iter()
                .all(|b| delivered.contains_key(b))
                .then_some(())
        },
    )
    .await;
    wait_until_settled(&outbox, &conn).await;
    second.stop().await;
    assert_eq!(receiver.delivered().len(), COUNT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_never_stored_in_redis_nor_shown_by_debug() {
    let redis = RedisServer::start();
    let conn = connect(&redis).await;
    let outbox = Outbox::new(conn.clone());
    let receiver = Receiver::start(500).await;
    // Entries in every key: one delivered, one waiting to retry, one dead.
    let policy = DeliveryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        ..quick_policy()
    };
    outbox
        .push(&notification(&receiver.url, 1))
        .await
        .expect("push");
    outbox
        .push(&Notification {
            signer: "client:removed".to_owned(),
            ..notification(&receiver.url, 2)
        })
        .await
        .expect("push");
    let worker = start_worker(&redis, &outbox, policy.clone(), "w1", metrics());
    wait_until(
        "a retry and a dead letter",
        Duration::from_secs(10),
        || async {
            let depth = outbox.depth().await.ok()?;
            (depth.retrying == 1 && depth.dead == 1).then_some(())
        },
    )
    .await;
    receiver.answer(200);
    outbox
        .push(&notification(&receiver.url, 3))
        .await
        .expect("push");
    wait_until("the third delivery", Duration::from_secs(10), || async {
        (!receiver.delivered().is_empty()).then_some(())
    })
    .await;
    worker.stop().await;

    let everything = dump(&conn).await;
    assert!(everything.len() >= 3, "{everything:?}");
    assert!(
        everything.iter().any(|v| v.contains("subscriber:crm")),
        "the dump should hold the signer name: {everything:?}"
    );
    for value in &everything {
        assert!(!value.contains(SECRET), "the secret is in redis: {value}");
    }

    let signers = signers();
    let shown = format!("{signers:?} {policy:?} {outbox:?}");
    assert!(shown.contains(SIGNER), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

/// Every key and every value in Redis, as text.
async fn dump(conn: &ConnectionManager) -> Vec<String> {
    let mut conn = conn.clone();
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("TYPE");
            let mut cmd = match kind.as_str() {
                "string" => redis::cmd("GET"),
                "hash" => redis::cmd("HGETALL"),
                "list" => {
                    let mut c = redis::cmd("LRANGE");
                    c.arg(&key).arg(0).arg(-1);
                    c
                }
                "set" => redis::cmd("SMEMBERS"),
                "zset" => {
                    let mut c = redis::cmd("ZRANGE");
                    c.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
                    c
                }
                // The entries, and the groups, consumers and pending lists.
                "stream" => {
                    let mut c = redis::cmd("XINFO");
                    c.arg("STREAM").arg(&key).arg("FULL");
                    c
                }
                other => panic!("unexpected key type {other} for {key}"),
            };
            if matches!(kind.as_str(), "string" | "hash" | "set") {
                cmd.arg(&key);
            }
            let value: Value = cmd.query_async(&mut conn).await.expect("read key");
            let mut texts = Vec::new();
            flatten(&value, &mut texts);
            out.push(format!("{key} {}", texts.join(" ")));
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out
}

fn flatten(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::Int(n) => out.push(n.to_string()),
        Value::Array(items) | Value::Set(items) => {
            items.iter().for_each(|v| flatten(v, out));
        }
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        other => out.push(format!("{other:?}")),
    }
}
