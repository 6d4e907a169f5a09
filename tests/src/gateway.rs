//! The whole gateway for one test: its own Redis, the sandbox on a free port
//! (configured from the gateway's settings, as `gateway dev` does), the api
//! and optionally a worker, all over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use gateway_config::{Environment, Role, Settings};
use gateway_sandbox::{Rules, Sandbox, SandboxConfig, TemplateConfig, WebhookTarget};
use gateway_telemetry::Metrics;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::RedisServer;

pub struct GatewayOptions {
    /// Senders `s0`, `s1`, ... with phone_number_ids `1000000000`, `1000000001`, ...
    pub senders: usize,
    /// Start a worker inside the test process.
    pub start_worker: bool,
    /// Sandbox rules; Meta's limits are on by default.
    pub rules: Rules,
    pub max_body_bytes: usize,
    /// Every sender's configured rate.
    pub rate_per_second: u32,
    /// The gateway's pair limit: one message per this many ms to a recipient.
    pub pair_interval_ms: u64,
    /// Give this sender a token the sandbox does not know.
    pub wrong_token_for: Option<usize>,
    /// Extra `[worker]` keys, as TOML lines.
    pub worker_toml: String,
    /// The sandbox posts its webhooks (statuses, inbound messages) to the
    /// api's `/webhook`, signed with [`APP_SECRET`].
    pub webhooks: bool,
    /// Extra top-level TOML (`[[subscribers]]`, `[notify]`), appended last.
    pub extra_toml: String,
    /// Extra environment variables (secrets the extra TOML names).
    pub extra_env: Vec<(String, String)>,
    /// Give every sender the default fallback template `hello_world`.
    pub sender_fallback: bool,
    /// The gateway's Graph API timeout.
    pub graph_timeout_ms: u64,
    /// The `[callbacks]` section: by default plain http to loopback is
    /// allowed, for the tests' own receivers.
    pub callbacks_toml: String,
    /// Templates the sandbox knows beside `hello_world`, `order_update` and
    /// the senders' fallbacks.
    pub templates: Vec<TemplateConfig>,
}

/// `[callbacks]` for receivers on this machine.
pub const LOCAL_CALLBACKS: &str =
    "[callbacks]\nrequire_https = false\nallow_private_addresses = true\n";

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            senders: 1,
            start_worker: true,
            rules: Rules::default(),
            max_body_bytes: 262_144,
            rate_per_second: 70,
            pair_interval_ms: 6_000,
            wrong_token_for: None,
            worker_toml: String::new(),
            webhooks: false,
            extra_toml: String::new(),
            extra_env: Vec::new(),
            sender_fallback: true,
            graph_timeout_ms: 5_000,
            callbacks_toml: LOCAL_CALLBACKS.to_owned(),
            templates: Vec::new(),
        }
    }
}

/// The WABA of every test sender (`waba_id` in the configuration below).
pub const WABA: &str = "2000";

/// Client key allowed every sender.
pub const KEY_ALL: &str = "test-key-all";
/// Client key allowed only sender `s0`.
pub const KEY_ONE: &str = "test-key-one";
/// The app secret Meta (the sandbox) signs webhooks with.
pub const APP_SECRET: &str = "test-app-secret";
/// The webhook verification token.
pub const VERIFY_TOKEN: &str = "test-verify-token";

pub struct TestGateway {
    pub redis: RedisServer,
    pub sandbox: Sandbox,
    pub settings: Arc<Settings>,
    pub api_url: String,
    pub http: reqwest::Client,
    pub metrics: Metrics,
    /// The configuration file and environment worker processes are started with.
    config_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    shutdown: CancellationToken,
    worker_shutdown: Option<CancellationToken>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestGateway {
    pub async fn start(options: GatewayOptions) -> Self {
        let redis = RedisServer::start();
        let shutdown = CancellationToken::new();

        let sandbox_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sandbox");
        let sandbox_url = format!("http://{}", sandbox_listener.local_addr().expect("addr"));
        let (toml, env) = config(&options, &redis.url(), &sandbox_url);
        let settings = Arc::new(
            Settings::from_toml(
                &toml,
                "test",
                &Environment::from_pairs(env.clone()),
                Role::Dev,
            )
            .expect("test settings"),
        );
        let config_dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(config_dir.path().join("gateway.toml"), &toml).expect("write config");
        let mut sandbox_config: SandboxConfig =
            gateway::sandbox_setup::sandbox_config(&settings).expect("sandbox config");
        if let Some(i) = options.wrong_token_for {
            // The sandbox knows the right token; the gateway is given another.
            if let Some(number) = sandbox_config.numbers.get_mut(i) {
                number.access_token = format!("token-{i}");
            }
        }
        sandbox_config.rules = options.rules;
        sandbox_config.templates.extend(options.templates);
        let sandbox = Sandbox::new(sandbox_config);
        let mut tasks = vec![tokio::spawn({
            let (sandbox, shutdown) = (sandbox.clone(), shutdown.clone());
            async move {
                let _ = sandbox.serve(sandbox_listener, shutdown).await;
            }
        })];

        let api_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let api_url = format!("http://{}", api_listener.local_addr().expect("addr"));
        if options.webhooks {
            sandbox.set_webhook(Some(WebhookTarget::new(
                format!("{api_url}/webhook"),
                APP_SECRET,
            )));
        }
        let metrics = Metrics::new();
        tasks.push(tokio::spawn({
            let (settings, metrics, shutdown) =
                (settings.clone(), metrics.clone(), shutdown.clone());
            async move {
                gateway::commands::api::serve(settings, api_listener, metrics, shutdown)
                    .await
                    .expect("api runs");
            }
        }));
        let mut gateway = Self {
            redis,
            sandbox,
            settings,
            api_url,
            http: reqwest::Client::new(),
            metrics,
            config_dir,
            env,
            shutdown,
            worker_shutdown: None,
            tasks,
        };
        if options.start_worker {
            gateway.start_worker().await;
        }
        gateway
    }

    /// Starts a worker in this process (one per gateway).
    pub async fn start_worker(&mut self) {
        self.start_worker_with(self.settings.clone()).await;
    }

    /// Starts the worker with Redis reached through `redis_url` (a proxy
    /// in front of this gateway's Redis).
    pub async fn start_worker_through(&mut self, redis_url: &str) {
        let mut settings = (*self.settings).clone();
        settings.redis.url = redis_url.to_owned();
        self.start_worker_with(Arc::new(settings)).await;
    }

    async fn start_worker_with(&mut self, settings: Arc<Settings>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
        let shutdown = self.shutdown.child_token();
        self.worker_shutdown = Some(shutdown.clone());
        let metrics = self.metrics.clone();
        self.tasks.push(tokio::spawn(async move {
            gateway::commands::worker::serve(settings, listener, metrics, shutdown)
                .await
                .expect("worker runs");
        }));
    }

    /// Starts `gateway worker` as a process of its own (`binary` is
    /// `env!("CARGO_BIN_EXE_gateway-under-test")`).
    pub fn spawn_worker(&self, binary: &str) -> WorkerProcess {
        let child = std::process::Command::new(binary)
            .arg("--config")
            .arg(self.config_dir.path().join("gateway.toml"))
            .arg("worker")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start a worker process");
        WorkerProcess { child: Some(child) }
    }

    /// Starts `gateway api` as a process of its own on `listen` (a free
    /// loopback address), against this gateway's Redis and configuration.
    pub fn spawn_api(&self, binary: &str, listen: std::net::SocketAddr) -> WorkerProcess {
        self.spawn_api_with_env(binary, listen, &[])
    }

    /// [`spawn_api`](Self::spawn_api) with more environment variables, such
    /// as configuration overrides (`GATEWAY_API__METRICS_LISTEN`) for this
    /// process only.
    pub fn spawn_api_with_env(
        &self,
        binary: &str,
        listen: std::net::SocketAddr,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let child = std::process::Command::new(binary)
            .arg("--config")
            .arg(self.config_dir.path().join("gateway.toml"))
            .arg("api")
            .arg("--listen")
            .arg(listen.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start an api process");
        WorkerProcess { child: Some(child) }
    }

    /// Runs a `gateway` command (`dlq list`, `senders resume`, ...) against
    /// this gateway's configuration; returns its exit status and output.
    pub fn command(&self, binary: &str, args: &[&str]) -> (bool, String) {
        let output = std::process::Command::new(binary)
            .arg("--config")
            .arg(self.config_dir.path().join("gateway.toml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run the gateway command");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// Posts messages through `/send/batch` in chunks; returns their ids in order.
    pub async fn send_all(&self, messages: &[Value]) -> Vec<String> {
        let mut ids = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(500) {
            let body = serde_json::json!({ "messages": chunk })
                .to_string()
                .into_bytes();
            let (status, answer) = self.post("/send/batch", Some(KEY_ALL), body).await;
            assert_eq!(status, 200, "{answer}");
            for result in answer["results"].as_array().expect("results") {
                assert_eq!(result["status"], "queued", "{result}");
                ids.push(result["id"].as_str().expect("id").to_owned());
            }
        }
        ids
    }

    /// `POST /send` as the client allowed every sender.
    pub async fn send(&self, body: &Value) -> (u16, Value) {
        self.post("/send", Some(KEY_ALL), body.to_string().into_bytes())
            .await
    }

    /// `POST path` with raw bytes and an optional client key.
    pub async fn post(&self, path: &str, key: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.api_url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("api answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `DELETE path` with an optional client key.
    pub async fn delete(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        delete_from(&self.http, &self.api_url, path, key).await
    }

    /// `GET path?query` as the client allowed every sender.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        get_from(&self.http, &self.api_url, path, query).await
    }

    /// The api's `/metrics` page.
    pub async fn api_metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.api_url))
            .send()
            .await
            .expect("the api answers /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("text")
    }

    /// `GET /messages/{id}` as the client allowed every sender.
    pub async fn message(&self, id: &str) -> (u16, Value) {
        message_from(&self.http, &self.api_url, id).await
    }

    /// Waits until the message reaches `status`, and returns its record.
    pub async fn wait_for_status(&self, id: &str, status: &str, deadline: Duration) -> Value {
        crate::wait_until(
            &format!("message {id} to be {status}"),
            deadline,
            || async {
                let (code, body) = self.message(id).await;
                (code == 200 && body["status"] == status).then_some(body)
            },
        )
        .await
    }

    /// A fresh connection to this gateway's Redis.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis answers")
    }

    /// Waits until a worker has synced the test WABA's template registry
    /// from the sandbox (after which `/send` checks templates).
    pub async fn wait_for_template_registry(&self) {
        crate::wait_until(
            "the template registry to be synced",
            Duration::from_secs(20),
            || async {
                let synced: bool = redis::cmd("HEXISTS")
                    .arg(gateway_queue::keys::templates(WABA))
                    .arg("#synced_ms")
                    .query_async(&mut self.redis().await)
                    .await
                    .expect("HEXISTS");
                synced.then_some(())
            },
        )
        .await;
    }

    /// The test WABA's registry entry for a template in a language, as JSON.
    pub async fn template_entry(&self, name: &str, language: &str) -> Option<Value> {
        let entry: Option<String> = redis::cmd("HGET")
            .arg(gateway_queue::keys::templates(WABA))
            .arg(format!("{name}|{language}"))
            .query_async(&mut self.redis().await)
            .await
            .expect("HGET");
        entry.and_then(|e| serde_json::from_str(&e).ok())
    }

    /// Entries in the queue stream of sender `index`.
    pub async fn queue_len(&self, index: usize) -> u64 {
        let key = gateway_queue::keys::queue(&phone_number_id(index));
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.redis().await)
            .await
            .expect("XLEN")
    }

    /// The worker holding the lease of each of the first `senders` senders.
    pub async fn lease_owners(&self, senders: usize) -> Vec<Option<String>> {
        let keys: Vec<String> = (0..senders)
            .map(|i| gateway_queue::keys::lease(&phone_number_id(i)))
            .collect();
        redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.redis().await)
            .await
            .expect("MGET")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub fn phone_number_id(index: usize) -> String {
    format!("{}", 1_000_000_000 + index)
}

/// The configuration file's text and the environment with its secrets.
fn config(
    options: &GatewayOptions,
    redis_url: &str,
    graph_url: &str,
) -> (String, Vec<(String, String)>) {
    // About the shortest lease that covers the longest send (the Graph
    // API's timeout plus Redis's 1 s, with margins): a killed worker's
    // senders move on sooner than with the default.
    let lease = if options.worker_toml.contains("lease_ttl_ms") {
        String::new()
    } else {
        format!("lease_ttl_ms = {}\n", options.graph_timeout_ms + 6_000)
    };
    let mut toml = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = {}\n\
         [worker]\nlisten = \"127.0.0.1:0\"\npair_interval_ms = {}\n{lease}{}\n\
         [redis]\nurl = \"{redis_url}\"\nresponse_timeout_ms = 1000\n\
         [graph]\nbase_url = \"{graph_url}\"\ntimeout_ms = {}\n",
        options.max_body_bytes,
        options.pair_interval_ms,
        options.worker_toml,
        options.graph_timeout_ms
    );
    let mut env = vec![
        ("KEY_ALL".to_owned(), KEY_ALL.to_owned()),
        ("KEY_ONE".to_owned(), KEY_ONE.to_owned()),
        ("WA_APP_SECRET".to_owned(), APP_SECRET.to_owned()),
        ("WA_VERIFY_TOKEN".to_owned(), VERIFY_TOKEN.to_owned()),
    ];
    let mut names = Vec::new();
    let fallback = if options.sender_fallback {
        "fallback_template = { name = \"hello_world\", language = { code = \"en_US\" } }\n"
    } else {
        ""
    };
    for i in 0..options.senders {
        toml.push_str(&format!(
            "[[senders]]\nname = \"s{i}\"\nphone_number_id = \"{}\"\nwaba_id = \"2000\"\n\
             access_token_env = \"TOKEN_{i}\"\nrate_per_second = {}\n{fallback}",
            phone_number_id(i),
            options.rate_per_second
        ));
        let token = if options.wrong_token_for == Some(i) {
            "wrong-token".to_owned()
        } else {
            format!("token-{i}")
        };
        env.push((format!("TOKEN_{i}"), token));
        names.push(format!("\"s{i}\""));
    }
    toml.push_str(&format!(
        "[[clients]]\nname = \"all\"\nkey_env = \"KEY_ALL\"\nsenders = [{}]\n\
         [[clients]]\nname = \"one\"\nkey_env = \"KEY_ONE\"\nsenders = [\"s0\"]\n",
        names.join(", ")
    ));
    toml.push_str(&options.callbacks_toml);
    toml.push_str(&options.extra_toml);
    env.extend(options.extra_env.iter().cloned());
    (toml, env)
}

/// A `gateway worker` process; killed when dropped.
pub struct WorkerProcess {
    child: Option<std::process::Child>,
}

impl WorkerProcess {
    /// The process id, while it runs (for `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// SIGSTOP: the process is frozen (no heartbeat, no answer read) until
    /// [`resume`](Self::resume).
    pub fn suspend(&self) {
        crate::redis_server::signal(self.child.as_ref(), "-STOP");
    }

    /// SIGCONT: a suspended process goes on.
    pub fn resume(&self) {
        crate::redis_server::signal(self.child.as_ref(), "-CONT");
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `deadline` for a clean exit.
    pub fn terminate(&mut self, deadline: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let give_up = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < give_up {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET {api_url}/messages/{id}` as the client allowed every sender: the
/// status and the body (`null` when it is not JSON).
pub async fn message_from(http: &reqwest::Client, api_url: &str, id: &str) -> (u16, Value) {
    get_from(http, api_url, &format!("/messages/{id}"), &[]).await
}

/// `DELETE {api_url}{path}` with an optional client key (for tasks that
/// hold only the client and the URL): the status and the body (`null` when
/// it is not JSON).
pub async fn delete_from(
    http: &reqwest::Client,
    api_url: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = http.delete(format!("{api_url}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET {api_url}{path}?query` as the client allowed every sender: the
/// status and the body (`null` when it is not JSON).
async fn get_from(
    http: &reqwest::Client,
    api_url: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let response = http
        .get(format!("{api_url}{path}"))
        .query(query)
        .bearer_auth(KEY_ALL)
        .send()
        .await
        .expect("api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
