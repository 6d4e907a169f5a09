//! `gateway`: the one binary. `api`, `worker` and `sandbox` run one process
//! each; `dev` runs them all (and a private Redis if none answers) for
//! trying the gateway on a laptop.

use clap::{Parser, Subcommand};
use gateway::commands;

/// mimalloc: the api and worker allocate many small, short-lived buffers
/// per request; glibc's allocator showed up as a fifth of the api's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    gateway_telemetry::init_tracing(cli.log_json);
    match cli.command {
        Command::Api { listen } => commands::api::run(&cli.config, listen).await,
        Command::Worker { listen } => commands::worker::run(&cli.config, listen).await,
        Command::Sandbox { listen } => commands::sandbox::run(&cli.config, listen).await,
        Command::Dev => commands::dev::run(&cli.config).await,
    }
}
