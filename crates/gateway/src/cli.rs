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
    }
}
