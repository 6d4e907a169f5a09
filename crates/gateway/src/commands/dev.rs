//! `gateway dev`: the whole system in one process for trying it locally —
//! Redis (a private `redis-server` if none answers at `redis.url`), the
//! sandbox, the api and one worker pointed at the sandbox, whose webhooks
//! (statuses, inbound messages) go to the api's `/webhook`. Secrets missing
//! from the environment get development values, printed where they are
//! needed (the client key for the curl lines).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use gateway_config::{Environment, Role, Settings};
use gateway_sandbox::Sandbox;
use gateway_telemetry::Metrics;
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

use super::bind;
use crate::sandbox_setup::sandbox_config;

pub async fn run(config: &str) -> anyhow::Result<()> {
    let mut settings = load_with_dev_secrets(config)?;
    let _redis = ensure_redis(&settings.redis.url).await?;
    let shutdown = crate::shutdown::on_signal();

    let sandbox_listener = bind(settings.sandbox.listen, "sandbox").await?;
    settings.graph.base_url = format!("http://{}", sandbox_listener.local_addr()?);
    let api_listener = bind(settings.api.listen, "api").await?;
    if settings.sandbox.webhook_url.is_none() {
        let api_port = api_listener.local_addr()?.port();
        settings.sandbox.webhook_url = Some(format!("http://127.0.0.1:{api_port}/webhook"));
    }
    let sandbox = Sandbox::new(sandbox_config(&settings)?);
    let worker_listener = bind(settings.worker.listen, "worker").await?;
    let settings = Arc::new(settings);

    print_try_it(
        &settings,
        api_listener.local_addr()?,
        worker_listener.local_addr()?,
    );
    let metrics = Metrics::new();
    let sandbox_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { sandbox.serve(sandbox_listener, shutdown).await }
    });
    let api = super::api::serve(
        settings.clone(),
        api_listener,
        metrics.clone(),
        shutdown.clone(),
    );
    let worker = super::worker::serve(settings.clone(), worker_listener, metrics, shutdown.clone());
    let (api, worker) = tokio::join!(api, worker);
    api?;
    worker?;
    sandbox_task.await??;
    Ok(())
}

/// The settings with a development value for every secret the environment
/// does not provide.
fn load_with_dev_secrets(config: &str) -> anyhow::Result<Settings> {
    let mut env = Environment::from_process();
    let named = Settings::load(config, &env, Role::Ops).context("configuration")?;
    for variable in named.secret_variables() {
        if env.get(variable).is_none() {
            env.set(
                variable,
                format!("dev-{}", variable.to_ascii_lowercase().replace('_', "-")),
            );
        }
    }
    let settings = Settings::load(config, &env, Role::Dev).context("configuration")?;
    super::apply_log_settings(&settings);
    Ok(settings)
}

/// Uses the Redis at `url` if it answers, else starts a private one on the
/// same port (killed when this process ends).
async fn ensure_redis(url: &str) -> anyhow::Result<Option<Child>> {
    if redis_answers(url).await {
        println!("Redis: using the server at {url}");
        return Ok(None);
    }
    let client = redis::Client::open(url).context("redis.url")?;
    let port = match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) if is_loopback(host) => *port,
        _ => bail!(
            "no Redis answers at {url}, and it is not a local address this command could start one on"
        ),
    };
    let dir = std::env::temp_dir().join(format!("gateway-dev-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating a directory for the dev Redis")?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|_| {
            anyhow::anyhow!("redis-server is not installed; install it with: sudo apt-get install -y redis-server")
        })?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !redis_answers(url).await {
        if tokio::time::Instant::now() > deadline {
            bail!("the private redis-server on port {port} did not start within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "Redis: started a private redis-server on port {port} (data in {})",
        dir.display()
    );
    Ok(Some(child))
}

async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(_))
    )
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

fn print_try_it(settings: &Settings, api: std::net::SocketAddr, worker: std::net::SocketAddr) {
    let (Some(client), Some(sender)) = (settings.clients.first(), settings.senders.first()) else {
        return;
    };
    let key = client
        .key
        .as_ref()
        .map(|k| k.expose_secret().to_owned())
        .unwrap_or_default();
    let sender_name = settings
        .senders
        .iter()
        .find(|s| client.senders.contains(&s.phone_number_id))
        .unwrap_or(sender)
        .name
        .clone();
    let host = format!("http://127.0.0.1:{}", api.port());
    let sandbox = &settings.graph.base_url;
    let pnid = settings
        .sender(&sender_name)
        .map(|s| s.phone_number_id.clone())
        .unwrap_or_default();
    let send = |body: &str| {
        format!(
            "curl -s -X POST {host}/send -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{body}'"
        )
    };
    let text = format!(
        r#"{{"from": "{sender_name}", "to": "+1 650 555 1234", "type": "text", "text": {{"body": "Your order shipped"}}}}"#
    );
    println!(
        "\nThe gateway is up: api {host} (its metrics at {host}/metrics, its contract at {host}/openapi.json),\n\
         worker metrics http://127.0.0.1:{}/metrics, sandbox {sandbox}\n\
         The key below is a development key for client {:?}.\n\n\
         1. Send a text to a user who has not written to you: their 24-hour window is closed,\n   \
         so the gateway sends the sender's fallback template instead (\"fallback_used\": true):\n\n  \
         {}\n\n\
         2. Read its status and history with the id it answered (sent, then delivered and read\n   \
         as the sandbox's webhooks arrive):\n\n  \
         curl -s {host}/messages/<id> -H 'Authorization: Bearer {key}'\n\n\
         3. Let the user write to you (the sandbox posts a signed webhook to the api), which opens\n   \
         their window:\n\n  \
         curl -s -X POST {sandbox}/admin/inbound -H 'Content-Type: application/json' \\\n    \
         -d '{{\"phone_number_id\": \"{pnid}\", \"from\": \"+16505551234\", \"text\": \"hi\"}}'\n\n\
         4. Send the same text again: now it goes as text (\"fallback_used\": false), after up to\n   \
         6 s (Meta's pair limit: one message to one user per 6 s).\n\n\
         Ctrl-C stops everything.\n",
        worker.port(),
        client.name,
        send(&text),
    );
}
