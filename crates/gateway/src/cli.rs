//! The command line: `api`, `worker` and `sandbox` run one process each;
//! `dev` runs them all (and a private Redis if none answers) for trying the
//! gateway on a laptop; the rest are the ops tools.

use crate::commands;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gateway", version, about = "Outbound WhatsApp gateway")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = gateway_config::DEFAULT_CONFIG_PATH)]
    config: String,
    /// Print logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (/send, /messages, /metrics).
    Api {
        /// Listen address; overrides api.listen.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Drain the senders' queues through the Graph API.
    Worker {
        /// Address for /metrics, /healthz and /readyz; overrides worker.listen.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Serve the Cloud API simulator.
    Sandbox {
        /// Listen address; overrides sandbox.listen.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run Redis (if none answers), the sandbox, the api and a worker together.
    Dev,
    /// Pause or resume a sender.
    Senders {
        #[command(subcommand)]
        action: SendersAction,
    },
    /// List or clear suppressions (recipients a sender will not message now).
    Suppressions {
        #[command(subcommand)]
        action: SuppressionsAction,
    },
    /// List, replay or purge dead letters (messages that failed for good).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Queue depth, owner, pause and dead letters per sender; workers and shared queues.
    ///
    /// Per sender: the messages not yet done in both streams (waiting, and in
    /// flight: read by a worker, being sent or waiting for a retry), the age
    /// of the oldest, scheduled messages, dead letters, the worker holding
    /// its lease and the lease's time left, and why it is paused. Then the
    /// registered workers, the webhook events not yet processed and the
    /// notification outbox (queued, retrying, dead).
    ///
    /// Sending rate: Redis keeps no count of messages sent, so "last minute"
    /// is the number of distinct recipients sent to in the last minute (a
    /// lower bound of the messages sent), shown with the configured
    /// rate_per_second. The effective rate (lowered after a 130429) is on the
    /// owning worker's /metrics as gateway_sender_effective_rate.
    Stats {
        /// Only this sender (name or phone_number_id).
        #[arg(long)]
        sender: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one message.
    Message {
        #[command(subcommand)]
        action: MessageAction,
    },
    /// Check each sender against Meta: token, number, WABA, fallback template, subscription, webhook.
    ///
    /// Per sender: the access token is valid, does not expire within 7 days
    /// and has whatsapp_business_management and whatsapp_business_messaging;
    /// the number is registered and CONNECTED, with its quality rating (RED
    /// fails) and throughput level; it belongs to the configured waba_id; the
    /// fallback_template exists and is APPROVED in its language; the WABA has
    /// the app subscribed. Then the api's GET /webhook answers the
    /// verification handshake with the configured verify token. Every line
    /// says pass or FAIL and, on a failure, the fix; exits 1 if any fails.
    Doctor {
        /// Only this sender (name or phone_number_id).
        sender: Option<String>,
        /// The api's base URL for the webhook check [default: http://127.0.0.1:<api.listen port>].
        #[arg(long)]
        api_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and the secrets a process needs, without starting it.
    ///
    /// Reports every missing secret variable by name (never a value) and a
    /// bad value with its key, or "ok" and a summary; exits 1 on any problem.
    CheckConfig {
        /// The process to check for: each needs different secrets.
        #[arg(long, value_enum, default_value = "all")]
        role: commands::check_config::CheckRole,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MessageAction {
    /// Status, wamid, attempts, fallback, error and history of a message.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "wamid"])))]
    Show {
        /// The message id `/send` answered.
        id: Option<String>,
        /// Find the message by Meta's id instead.
        #[arg(long)]
        wamid: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a message not sent yet (queued, scheduled, held, retrying).
    ///
    /// Its status event goes to its callback and the status subscribers.
    /// Exits 1, naming the state, when it is being sent or past that.
    Cancel {
        /// The message id `/send` answered.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SendersAction {
    /// Stop sending for a sender; its queue is kept.
    Pause {
        /// Sender name or phone_number_id.
        name: String,
        /// Why, shown in the worker's /readyz.
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Start sending again (after fixing a token, for example).
    Resume {
        /// Sender name or phone_number_id.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SuppressionsAction {
    /// Show a sender's suppressions in force.
    List {
        /// Sender name or phone_number_id.
        #[arg(long)]
        sender: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Clear a recipient's suppressions (marketing again, or at all).
    Clear {
        /// Phone number or business-scoped user id.
        recipient: String,
        /// Sender name or phone_number_id.
        #[arg(long)]
        sender: String,
        /// Only `marketing` or `all`; both when left out.
        #[arg(long)]
        scope: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show dead letters, oldest first.
    List {
        #[command(flatten)]
        selection: DlqSelection,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again, keeping their ids.
    Replay {
        #[command(flatten)]
        selection: DlqSelection,
        /// Replay every dead letter of every sender.
        #[arg(long, conflicts_with_all = ["sender", "code", "id"])]
        all: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete dead letters for good; say which (--sender, --code, --id) or --all.
    ///
    /// Selectors combine: `--sender s0 --code 132001` deletes that sender's
    /// 132001s. Their message records stay until they expire.
    Purge {
        #[command(flatten)]
        selection: DlqSelection,
        /// Delete the dead letters of every sender (with --older-than-seconds, only the old ones).
        #[arg(long, conflicts_with_all = ["sender", "code", "id"])]
        all: bool,
        /// Only those that failed more than this many seconds ago.
        #[arg(long, value_name = "N")]
        older_than_seconds: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct DlqSelection {
    /// Only this sender (name or phone_number_id).
    #[arg(long)]
    sender: Option<String>,
    /// Only this Meta error code.
    #[arg(long, allow_negative_numbers = true)]
    code: Option<i64>,
    /// Only these message ids.
    #[arg(long)]
    id: Vec<String>,
}

impl DlqSelection {
    fn as_selection(&self) -> commands::dlq::Selection<'_> {
        commands::dlq::Selection {
            sender: self.sender.as_deref(),
            code: self.code,
            ids: self.id.clone(),
        }
    }
}

/// Parses the arguments and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli));
    match result {
        Ok(()) => Ok(()),
        // The command printed its verdict already (check-config).
        Err(error) if error.is::<commands::AlreadyReported>() => std::process::exit(1),
        Err(error) => {
            eprintln!("Error: {}", one_line(&error));
            std::process::exit(1)
        }
    }
}

/// The error and its causes on one line, without a backtrace, each cause
/// once (a Redis error repeats its source in its own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    gateway_telemetry::init_tracing(cli.log_json);
    match cli.command {
        Command::Api { listen } => commands::api::run(&cli.config, listen).await,
        Command::Worker { listen } => commands::worker::run(&cli.config, listen).await,
        Command::Sandbox { listen } => commands::sandbox::run(&cli.config, listen).await,
        Command::Dev => commands::dev::run(&cli.config).await,
        Command::Senders { action } => match action {
            SendersAction::Pause { name, reason, json } => {
                commands::senders::pause(&cli.config, &name, &reason, json).await
            }
            SendersAction::Resume { name, json } => {
                commands::senders::resume(&cli.config, &name, json).await
            }
        },
        Command::Suppressions { action } => match action {
            SuppressionsAction::List { sender, json } => {
                commands::suppressions::list(&cli.config, &sender, json).await
            }
            SuppressionsAction::Clear {
                recipient,
                sender,
                scope,
                json,
            } => {
                commands::suppressions::clear(
                    &cli.config,
                    &sender,
                    &recipient,
                    scope.as_deref(),
                    json,
                )
                .await
            }
        },
        Command::Dlq { action } => match action {
            DlqAction::List {
                selection,
                limit,
                json,
            } => commands::dlq::list(&cli.config, selection.as_selection(), limit, json).await,
            DlqAction::Replay {
                all: true, json, ..
            } => commands::dlq::replay_all(&cli.config, json).await,
            DlqAction::Replay {
                selection, json, ..
            } => commands::dlq::replay(&cli.config, selection.as_selection(), json).await,
            DlqAction::Purge {
                selection,
                all,
                older_than_seconds,
                json,
            } => {
                commands::dlq::purge(
                    &cli.config,
                    selection.as_selection(),
                    all,
                    older_than_seconds,
                    json,
                )
                .await
            }
        },
        Command::Stats { sender, json } => {
            commands::stats::run(&cli.config, sender.as_deref(), json).await
        }
        Command::Message {
            action: MessageAction::Show { id, wamid, json },
        } => {
            let lookup = match (&id, &wamid) {
                (_, Some(wamid)) => commands::message::Lookup::Wamid(wamid),
                (Some(id), None) => commands::message::Lookup::Id(id),
                (None, None) => anyhow::bail!("name a message: ID or --wamid W"),
            };
            commands::message::show(&cli.config, lookup, json).await
        }
        Command::Message {
            action: MessageAction::Cancel { id, json },
        } => commands::message::cancel(&cli.config, &id, json).await,
        Command::Doctor {
            sender,
            api_url,
            json,
        } => commands::doctor::run(&cli.config, sender.as_deref(), api_url.as_deref(), json).await,
        Command::CheckConfig { role, json } => commands::check_config::run(&cli.config, role, json),
    }
}
