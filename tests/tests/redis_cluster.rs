//! The gateway unchanged on a Redis Cluster: three masters, the api and two
//! workers as processes of the real binary with
//! `redis.url = "redis+cluster://..."`, the sandbox in this process. Senders
//! spread over the masters; every accepted message is sent. Then one master
//! is stopped (SIGTERM) and started again on its port and directory (AOF)
//! while sending goes on: `/send` may answer 503 meanwhile, but every
//! message it answered 202 for ends `sent`. And one master is kept down for
//! longer than a lease lasts: the senders on the other masters go on.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_config::{Environment, Role, Settings};
use gateway_queue::EnqueueOutcome;
use gateway_sandbox::{Sandbox, SandboxConfig};
use gateway_tests::{KEY_ALL, RedisCluster, message_from, phone_number_id, rfc3339_in, wait_until};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const SENDERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_on_a_cluster_and_loses_nothing_when_a_master_restarts() {
    let mut cluster = tokio::task::block_in_place(RedisCluster::start);
    let gateway = ClusterGateway::start(&cluster.url()).await;

    // Senders land on different masters: every master owns at least one.
    let owners: Vec<usize> = (0..SENDERS)
        .map(|i| cluster.owner_of(&gateway_queue::keys::queue(&phone_number_id(i))))
        .collect();
    let masters: BTreeSet<usize> = owners.iter().copied().collect();
    assert_eq!(
        masters.len(),
        cluster.ports().len(),
        "senders by master: {owners:?}"
    );

    // Every sender, several messages each: all accepted, all sent.
    let mut accepted = Vec::new();
    let mut recipient = 0;
    for _ in 0..5 {
        for sender in 0..SENDERS {
            recipient += 1;
            let (status, body) = gateway.send(sender, recipient).await;
            assert_eq!(status, 202, "{body}");
            accepted.push(body["id"].as_str().expect("id").to_owned());
        }
    }
    // One batch across every sender (so across masters): half with an
    // idempotency key (the enqueue script), half plain XADDs. Sent twice,
    // the keyed ones answer their first ids.
    let batch: Vec<Value> = (0..2 * SENDERS)
        .map(|n| {
            let mut message = message(n % SENDERS, 5_000 + n as u32);
            if n < SENDERS {
                message["idempotency_key"] = json!(format!("batch-{n}"));
            }
            message
        })
        .collect();
    let first = gateway.send_batch(&batch).await;
    let again = gateway.send_batch(&batch).await;
    assert_eq!(first[..SENDERS], again[..SENDERS], "keyed: the first ids");
    accepted.extend(first);
    accepted.extend(again[SENDERS..].iter().cloned());
    gateway
        .wait_all_sent(&accepted, Duration::from_secs(60))
        .await;

    // Reads across senders (one pipeline split by slot) and the shared keys,
    // from this process.
    let queue = cluster.queue();
    let pnids: Vec<String> = (0..SENDERS).map(phone_number_id).collect();
    let pnid_refs: Vec<&str> = pnids.iter().map(String::as_str).collect();
    let states = queue
        .sender_states(&pnid_refs)
        .await
        .expect("sender states");
    assert!(
        states.iter().all(|(lease, _)| lease.is_some()),
        "every sender has an owner: {states:?}"
    );
    let shared = queue.shared_stats().await.expect("shared stats");
    assert_eq!(shared.workers.len(), 2, "{:?}", shared.workers);
    let last = accepted.last().expect("an id");
    let (_, record) = gateway.message(last).await;
    let wamid = record["wamid"].as_str().expect("a wamid");
    let found = queue.find_by_wamid(&pnids, wamid).await.expect("lookup");
    assert_eq!(found.as_ref().map(|id| id.as_str()), Some(last.as_str()));
    let outbox = gateway_notify::Outbox::new(queue.connection());
    outbox.depth().await.expect("outbox depth");
    let (_, probe): ((), String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("gw:{notify}:probe")
        .arg("1")
        .cmd("GET")
        .arg("gw:{notify}:probe")
        .query_async(&mut queue.connection())
        .await
        .expect("a transaction within one slot");
    assert_eq!(probe, "1");

    // A master restarts while sending goes on.
    let victim = owners[0];
    let victim_senders: Vec<usize> = (0..SENDERS).filter(|&i| owners[i] == victim).collect();
    let log = Arc::new(Mutex::new(SendLog::default()));
    let stop = CancellationToken::new();
    let sending = tokio::spawn({
        let (gateway, log, stop) = (gateway.clone(), log.clone(), stop.clone());
        async move {
            let mut recipient = 10_000;
            while !stop.is_cancelled() {
                for sender in 0..SENDERS {
                    recipient += 1;
                    let (status, body) = gateway.send(sender, recipient).await;
                    let mut log = log.lock().expect("log");
                    match status {
                        202 => log
                            .accepted
                            .push((sender, body["id"].as_str().expect("id").to_owned())),
                        503 => log.unavailable[sender] += 1,
                        _ => log.unexpected.push(format!("{status} {body}")),
                    }
                }
            }
        }
    });
    let accepted_count = || log.lock().expect("log").accepted.len();
    let before = accepted_count();
    wait_until(
        "sending to be under way",
        Duration::from_secs(20),
        || async { (accepted_count() >= before + SENDERS).then_some(()) },
    )
    .await;

    tokio::task::block_in_place(|| cluster.stop(victim));
    wait_until(
        "a 503 for a sender of the stopped master",
        Duration::from_secs(20),
        || async {
            let log = log.lock().expect("log");
            victim_senders
                .iter()
                .any(|&i| log.unavailable[i] > 0)
                .then_some(())
        },
    )
    .await;
    let during_outage = accepted_count();
    tokio::task::block_in_place(|| cluster.start_again(victim));
    let restarted_at = accepted_count();

    // The restarted master's senders are accepted again, and the others
    // were never refused for long.
    wait_until(
        "the restarted master's senders to be accepted again",
        Duration::from_secs(30),
        || async {
            let log = log.lock().expect("log");
            log.accepted[restarted_at..]
                .iter()
                .filter(|(sender, _)| victim_senders.contains(sender))
                .nth(SENDERS)
                .map(|_| ())
        },
    )
    .await;
    stop.cancel();
    sending.await.expect("sending task");

    let log = Arc::try_unwrap(log)
        .ok()
        .expect("one owner")
        .into_inner()
        .expect("log");
    assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
    eprintln!(
        "accepted {} during the restart phase ({} while the master was down, before restart: {}), \
         503s by sender {:?} (victim master owns {victim_senders:?})",
        log.accepted.len(),
        restarted_at - during_outage,
        during_outage - before,
        log.unavailable
    );
    accepted.extend(log.accepted.into_iter().map(|(_, id)| id));
    // Nothing accepted is lost: the first messages (some on the restarted
    // master, read back from its AOF) and every one accepted around the restart.
    gateway
        .wait_all_sent(&accepted, Duration::from_secs(120))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_the_cluster_driver_repeats_stores_one_message() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let queue = cluster.queue();
    let pnid = phone_number_id(0);
    let message = |request| gateway_queue::NewMessage {
        sender_name: "s0",
        phone_number_id: &pnid,
        client: "all",
        recipient: "+16505550001",
        kind: "template",
        graph_body: "{}",
        fallback_body: None,
        metadata: None,
        idempotency: None,
        lane: gateway_domain::Lane::Transactional,
        send_after_ms: None,
        expires_at_ms: None,
        callback_url: None,
        template_category: None,
        fallback_category: None,
        request,
    };
    let now_ms = 1_000;

    // The driver sends the same request again after a dropped connection:
    // the first id, and one message.
    let first = queue
        .enqueue(&message("request-1"), now_ms)
        .await
        .expect("stored");
    let again = queue
        .enqueue(&message("request-1"), now_ms)
        .await
        .expect("stored");
    assert!(matches!(first, EnqueueOutcome::Queued(_)), "{first:?}");
    assert_eq!(again, first);
    assert_eq!(queue.depth(&pnid).await.expect("depth").length, 1);

    // Another request with the same payload is another message.
    let other = queue
        .enqueue(&message("request-2"), now_ms)
        .await
        .expect("stored");
    assert_ne!(other, first);
    assert_eq!(queue.depth(&pnid).await.expect("depth").length, 2);

    // Batches too.
    let batch = [message("request-3"), message("request-4")];
    let stored = queue.enqueue_batch(&batch, now_ms).await.expect("stored");
    let repeated = queue.enqueue_batch(&batch, now_ms).await.expect("stored");
    let ids = |results: Vec<Result<EnqueueOutcome, _>>| -> Vec<EnqueueOutcome> {
        results.into_iter().map(|r| r.expect("stored")).collect()
    };
    assert_eq!(ids(repeated), ids(stored));
    assert_eq!(queue.depth(&pnid).await.expect("depth").length, 4);
}

/// How long a lease lasts unless renewed (the default `worker.lease_ttl_ms`).
const LEASE_TTL: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_master_kept_down_the_senders_on_the_others_go_on() {
    let mut cluster = tokio::task::block_in_place(RedisCluster::start);
    let gateway = ClusterGateway::start(&cluster.url()).await;
    // The master that holds the workers' registry goes down: a worker that
    // needed it (or any one master) to keep its leases would stop every sender.
    let victim = cluster.owner_of(gateway_queue::keys::WORKERS);
    let owners: Vec<usize> = (0..SENDERS)
        .map(|i| cluster.owner_of(&gateway_queue::keys::queue(&phone_number_id(i))))
        .collect();
    let (down, up): (Vec<usize>, Vec<usize>) = (0..SENDERS).partition(|&i| owners[i] == victim);
    assert!(
        !down.is_empty() && !up.is_empty(),
        "senders by master: {owners:?}"
    );
    eprintln!("master {victim} goes down, with senders {down:?}; {up:?} stay up");

    // Every sender is owned and sends.
    let mut first = Vec::new();
    for sender in 0..SENDERS {
        let (status, body) = gateway.send(sender, sender as u32).await;
        assert_eq!(status, 202, "{body}");
        first.push(body["id"].as_str().expect("id").to_owned());
    }
    gateway.wait_all_sent(&first, Duration::from_secs(30)).await;

    // The victim's senders get messages due in a moment, which its master
    // holds through the outage.
    let mut held = Vec::new();
    for &sender in &down {
        for n in 0..3 {
            let mut message = message(sender, 1_000 + 10 * sender as u32 + n);
            message["send_after"] = rfc3339_in(Duration::from_secs(2)).into();
            let (status, body) = gateway.post_send(&message).await;
            assert_eq!(status, 202, "{body}");
            held.push(body["id"].as_str().expect("id").to_owned());
        }
    }
    tokio::task::block_in_place(|| cluster.stop(victim));
    let stopped = tokio::time::Instant::now();

    // For longer than a lease lasts unrenewed, the other senders' messages
    // are accepted and sent, while the master stays down.
    let mut during = Vec::new();
    let mut recipient = 2_000;
    while stopped.elapsed() < LEASE_TTL + Duration::from_secs(4) {
        for &sender in &up {
            recipient += 1;
            let (status, body) = gateway.send(sender, recipient).await;
            assert_eq!(status, 202, "sender s{sender}: {body}");
            during.push(body["id"].as_str().expect("id").to_owned());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let late = during.split_off(during.len() - up.len());
    gateway.wait_all_sent(&late, Duration::from_secs(10)).await;
    gateway
        .wait_all_sent(&during, Duration::from_secs(10))
        .await;

    // The master returns: its senders drain, nothing lost.
    tokio::task::block_in_place(|| cluster.start_again(victim));
    gateway.wait_all_sent(&held, Duration::from_secs(60)).await;
}

#[derive(Default)]
struct SendLog {
    /// (sender, id) of every 202.
    accepted: Vec<(usize, String)>,
    /// 503s by sender.
    unavailable: [u32; SENDERS],
    unexpected: Vec<String>,
}

/// The api and two workers as processes, the sandbox in this process.
#[derive(Clone)]
struct ClusterGateway {
    api_url: String,
    http: reqwest::Client,
    _parts: Arc<Parts>,
}

struct Parts {
    processes: Vec<Process>,
    shutdown: CancellationToken,
    _config_dir: tempfile::TempDir,
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.processes.clear();
    }
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ClusterGateway {
    async fn start(redis_url: &str) -> Self {
        let shutdown = CancellationToken::new();
        let sandbox_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sandbox");
        let sandbox_url = format!("http://{}", sandbox_listener.local_addr().expect("addr"));
        let (toml, env) = config(redis_url, &sandbox_url);
        let settings = Settings::from_toml(
            &toml,
            "test",
            &Environment::from_pairs(env.clone()),
            Role::Dev,
        )
        .expect("test settings");
        let sandbox_config: SandboxConfig =
            gateway::sandbox_setup::sandbox_config(&settings).expect("sandbox config");
        let sandbox = Sandbox::new(sandbox_config);
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                let _ = sandbox.serve(sandbox_listener, shutdown).await;
            }
        });

        let config_dir = tempfile::tempdir().expect("temporary directory");
        let config_path = config_dir.path().join("gateway.toml");
        std::fs::write(&config_path, &toml).expect("write config");
        let spawn = |args: &[&str]| {
            let child = Command::new(BINARY)
                .arg("--config")
                .arg(&config_path)
                .args(args)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("start a gateway process");
            Process(child)
        };
        let api_addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("addr")
        };
        let processes = vec![
            spawn(&["api", "--listen", &api_addr.to_string()]),
            spawn(&["worker"]),
            spawn(&["worker"]),
        ];
        let gateway = Self {
            api_url: format!("http://{api_addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            _parts: Arc::new(Parts {
                processes,
                shutdown,
                _config_dir: config_dir,
            }),
        };
        wait_until(
            "the api to be ready (Redis Cluster reachable)",
            Duration::from_secs(30),
            || async {
                let response = gateway
                    .http
                    .get(format!("{}/readyz", gateway.api_url))
                    .send()
                    .await
                    .ok()?;
                (response.status().as_u16() == 200).then_some(())
            },
        )
        .await;
        gateway
    }

    /// `POST /send/batch`; every message must be stored: their ids in order.
    async fn send_batch(&self, messages: &[Value]) -> Vec<String> {
        let response = self
            .http
            .post(format!("{}/send/batch", self.api_url))
            .bearer_auth(KEY_ALL)
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .expect("api answers");
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = response.json().await.expect("json");
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|result| {
                result["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("stored: {result}"))
                    .to_owned()
            })
            .collect()
    }

    /// `GET /messages/{id}`.
    async fn message(&self, id: &str) -> (u16, Value) {
        message_from(&self.http, &self.api_url, id).await
    }

    /// `POST /send`: [`message`] from sender `sender`.
    async fn send(&self, sender: usize, recipient: u32) -> (u16, Value) {
        self.post_send(&message(sender, recipient)).await
    }

    /// `POST /send` with `message`.
    async fn post_send(&self, message: &Value) -> (u16, Value) {
        let Ok(response) = self
            .http
            .post(format!("{}/send", self.api_url))
            .bearer_auth(KEY_ALL)
            .json(message)
            .send()
            .await
        else {
            // No answer is no acceptance.
            return (0, Value::Null);
        };
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until every message's record (`GET /messages/{id}`) says `sent`.
    async fn wait_all_sent(&self, ids: &[String], deadline: Duration) {
        let give_up = tokio::time::Instant::now() + deadline;
        let mut waiting: HashMap<&str, String> =
            ids.iter().map(|id| (id.as_str(), String::new())).collect();
        loop {
            let mut done = Vec::new();
            for (id, last) in waiting.iter_mut() {
                let Ok(response) = self
                    .http
                    .get(format!("{}/messages/{id}", self.api_url))
                    .bearer_auth(KEY_ALL)
                    .send()
                    .await
                else {
                    continue;
                };
                let code = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if code == 200 && body["status"] == "sent" {
                    done.push(*id);
                } else {
                    *last = format!("{code} {}", body["status"]);
                }
            }
            for id in done {
                waiting.remove(id);
            }
            if waiting.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "after {deadline:?}, {} of {} messages not sent: {:?}",
                waiting.len(),
                ids.len(),
                waiting.iter().take(10).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A template from sender `sender` to a recipient of its own.
fn message(sender: usize, recipient: u32) -> Value {
    json!({"from": format!("s{sender}"), "to": format!("+1650555{recipient:04}"),
        "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}})
}

/// The configuration file (what `redis.url` names is the only difference
/// from a single-server setup) and the environment with its secrets.
fn config(redis_url: &str, graph_url: &str) -> (String, Vec<(String, String)>) {
    let mut toml = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n\
         [worker]\nlisten = \"127.0.0.1:0\"\n\
         [redis]\nurl = \"{redis_url}\"\nresponse_timeout_ms = 1000\n\
         [graph]\nbase_url = \"{graph_url}\"\ntimeout_ms = 5000\n"
    );
    let mut env = vec![
        ("KEY_ALL".to_owned(), KEY_ALL.to_owned()),
        (
            "WA_APP_SECRET".to_owned(),
            gateway_tests::APP_SECRET.to_owned(),
        ),
        (
            "WA_VERIFY_TOKEN".to_owned(),
            gateway_tests::VERIFY_TOKEN.to_owned(),
        ),
    ];
    let mut names = Vec::new();
    for i in 0..SENDERS {
        toml.push_str(&format!(
            "[[senders]]\nname = \"s{i}\"\nphone_number_id = \"{}\"\nwaba_id = \"2000\"\n\
             access_token_env = \"TOKEN_{i}\"\nrate_per_second = 70\n\
             fallback_template = {{ name = \"hello_world\", language = {{ code = \"en_US\" }} }}\n",
            phone_number_id(i),
        ));
        env.push((format!("TOKEN_{i}"), format!("token-{i}")));
        names.push(format!("\"s{i}\""));
    }
    toml.push_str(&format!(
        "[[clients]]\nname = \"all\"\nkey_env = \"KEY_ALL\"\nsenders = [{}]\n",
        names.join(", ")
    ));
    (toml, env)
}
