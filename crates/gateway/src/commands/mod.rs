//! One module per subcommand.

pub mod api;
pub mod dev;
pub mod dlq;
pub mod sandbox;
pub mod senders;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use gateway_config::{Environment, Role, SenderSettings, Settings};
pub use gateway_domain::clock::unix_ms;
use gateway_queue::Queue;

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

/// The Redis connection the settings describe.
pub fn queue(settings: &Settings) -> anyhow::Result<Queue> {
    let redis = &settings.redis;
    Ok(gateway_queue::connect(
        &redis.url,
        redis.connect_timeout,
        redis.response_timeout,
        redis.record_ttl,
    )?)
}

/// The configured sender with this name or phone_number_id.
pub fn sender<'a>(settings: &'a Settings, name: &str) -> anyhow::Result<&'a Arc<SenderSettings>> {
    settings.sender(name).ok_or_else(|| {
        let known: Vec<&str> = settings.senders.iter().map(|s| s.name.as_str()).collect();
        anyhow::anyhow!(
            "no sender is named {name:?}; configured: {}",
            known.join(", ")
        )
    })
}
