//! `gateway sandbox`: serves the Cloud API simulator until SIGTERM.

use std::net::SocketAddr;

use gateway_config::Role;
use gateway_sandbox::Sandbox;

use super::{bind, load_settings};
use crate::sandbox_setup::sandbox_config;

pub async fn run(config: &str, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Sandbox)?;
    let listener = bind(listen.unwrap_or(settings.sandbox.listen), "sandbox").await?;
    tracing::info!(listen = %listener.local_addr()?, "sandbox listening");
    let sandbox = Sandbox::new(sandbox_config(&settings)?);
    sandbox
        .serve(listener, crate::shutdown::on_signal())
        .await?;
    Ok(())
}
