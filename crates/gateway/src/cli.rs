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
    /// List or replay dead letters (messages that failed for good).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
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
        #[arg(long)]
        json: bool,
    },
    /// Start sending again (after fixing a token, for example).
    Resume {
        name: String,
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
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
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
        },
    }
}
