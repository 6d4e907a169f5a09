//! One module per subcommand.

pub mod api;
pub mod dev;
pub mod sandbox;
pub mod worker;

use anyhow::Context;
use gateway_config::{Environment, Role, Settings};

/// Loads the configuration for `role` from the file and this process's environment.
pub fn load_settings(path: &str, role: Role) -> anyhow::Result<Settings> {
    Settings::load(path, &Environment::from_process(), role).context("configuration")
}

pub async fn bind(
    addr: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what}"))
}
