//! The outbound worker a Rust team would write instead of the gateway's:
//! apalis 1.0 on apalis-redis 1.0, tower's rate-limit and retry layers, and
//! one reqwest call per job to the WhatsApp Cloud API (here the sandbox).
//!
//! `enqueue` fills the queue; `work` runs the worker until it is killed
//! (apalis has no "stop when drained"; run.sh watches Redis from outside).

use std::{
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The apalis-redis queue; its keys are `outbound:active`, `outbound:done`, ...
const QUEUE: &str = "outbound";
/// Jobs per `push_bulk` call (one Lua script invocation each).
const PUSH_CHUNK: usize = 1_000;

/// apalis-redis 1.0 files every pushed job in `QUEUE:scheduled` (run_at =
/// now), and each fetch moves *all* due ones to `QUEUE:active` with one
/// `unpack(...)`, which Lua refuses past ~8,000 values ("too many results to
/// unpack"): a worker started on a backlog of 100k jobs dies on its first
/// fetch. So `enqueue` does that move itself, in chunks, leaving Redis as a
/// working fetch would have.
static PROMOTE_DUE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local ids = redis.call('zrangebyscore', KEYS[1], 0, ARGV[1], 'LIMIT', 0, 5000)
        if #ids > 0 then
            redis.call('rpush', KEYS[2], unpack(ids))
            redis.call('zrem', KEYS[1], unpack(ids))
        end
        return #ids
        ",
    )
});

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push COUNT template-message jobs into the queue.
    Enqueue {
        #[arg(long)]
        redis: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value = "100000000001")]
        phone_number_id: String,
    },
    /// Run the worker (forever; stop it with a signal).
    Work {
        #[arg(long)]
        redis: String,
        /// Graph API base URL, e.g. http://127.0.0.1:18090
        #[arg(long)]
        graph: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        phone_number_id: String,
        #[arg(long, default_value = "v25.0")]
        graph_version: String,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Per-process, fixed-window limit; high so it does not bind.
        #[arg(long, default_value_t = 1_000_000)]
        rate_per_second: u64,
        #[arg(long, default_value_t = 3)]
        retries: usize,
        /// Keep apalis-redis's default per-task leases. Off by default, as its
        /// docs advise for tasks shorter than a heartbeat (30 s): each lease
        /// runs `LREM` over the whole pending list, so with a backlog of 100k
        /// the worker slows to a few hundred jobs per second.
        #[arg(long)]
        lock_tasks: bool,
        /// Jobs per fetch (apalis-redis's default is 10).
        #[arg(long, default_value_t = 10)]
        batch_size: usize,
    },
}

/// One outbound message: where it goes and the Graph API body to POST.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SendMessage {
    phone_number_id: String,
    to: String,
    body: Value,
}

/// What every job needs: one shared HTTP client and the API coordinates.
struct Graph {
    http: reqwest::Client,
    base: String,
    token: String,
    /// The WhatsApp number the token sends as.
    phone_number_id: String,
}

async fn send_message(job: SendMessage, graph: Data<Arc<Graph>>) -> Result<(), BoxDynError> {
    if job.phone_number_id != graph.phone_number_id {
        let wrong = format!("no token for sender {}", job.phone_number_id);
        return Err(AbortError::new(wrong).into());
    }
    let url = format!("{}/{}/messages", graph.base, job.phone_number_id);
    let response = graph
        .http
        .post(url)
        .bearer_auth(&graph.token)
        .json(&job.body)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let detail = response.text().await.unwrap_or_default();
        return Err(format!("graph api answered {status}: {detail}").into());
    }
    Ok(())
}

async fn storage(redis: &str, config: Config) -> Result<RedisStorage<SendMessage>, BoxDynError> {
    let conn = apalis_redis::connect(redis).await?;
    Ok(RedisStorage::new(conn).with_config(config.queue(QUEUE)))
}

fn template_message(phone_number_id: &str, i: usize) -> SendMessage {
    let to = format!("+1650555{:04}", i % 10_000);
    let body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": { "name": "hello_world", "language": { "code": "en_US" } },
    });
    SendMessage {
        phone_number_id: phone_number_id.to_owned(),
        to,
        body,
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    match Cli::parse().command {
        Command::Enqueue {
            redis,
            count,
            phone_number_id,
        } => {
            let mut storage = storage(&redis, Config::default()).await?;
            let jobs: Vec<_> = (0..count)
                .map(|i| template_message(&phone_number_id, i))
                .collect();
            for chunk in jobs.chunks(PUSH_CHUNK) {
                storage.push_bulk(chunk.to_vec()).await?;
            }
            let (scheduled, active) = (
                storage.get_config().scheduled_jobs_set(),
                storage.get_config().active_jobs_list(),
            );
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            loop {
                let moved: usize = PROMOTE_DUE
                    .key(&scheduled)
                    .key(&active)
                    .arg(now)
                    .invoke_async(storage.get_connection())
                    .await?;
                if moved == 0 {
                    break;
                }
            }
        }
        Command::Work {
            redis,
            graph,
            token,
            phone_number_id,
            graph_version,
            concurrency,
            rate_per_second,
            retries,
            lock_tasks,
            batch_size,
        } => {
            let graph = Arc::new(Graph {
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()?,
                base: format!("{}/{graph_version}", graph.trim_end_matches('/')),
                token,
                phone_number_id,
            });
            let config = Config::default()
                .lock_tasks(lock_tasks)
                .batch_size(batch_size);
            // Layer order follows apalis's own advice: concurrency, then the
            // rate limit, then retries (so retries do not pass the limiter again).
            WorkerBuilder::new("reference-worker")
                .backend(storage(&redis, config).await?)
                .concurrency(concurrency)
                .rate_limit(rate_per_second, Duration::from_secs(1))
                .retry(RetryPolicy::retries(retries))
                .parallelize(tokio::spawn)
                .data(graph)
                .build(send_message)
                .run()
                .await?;
        }
    }
    Ok(())
}
