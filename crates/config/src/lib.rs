//! Configuration: one TOML file (default `config/gateway.toml`), overridden
//! key by key from `GATEWAY_<SECTION>__<KEY>` environment variables, with
//! secrets (access tokens, app secrets, client keys) read from the
//! environment variables the file names. Loading either yields a complete,
//! checked [`Settings`] or an error that names the offending key; secrets are
//! [`secrecy::SecretString`] so they cannot be printed by accident.

mod env;
mod error;
mod file;
mod settings;

pub use env::Environment;
pub use error::ConfigError;
pub use settings::{
    ApiSettings, CALL_MARGIN, CallbackSettings, ClientSettings, GraphSettings, LEASE_SAFETY_MARGIN,
    LogFormat, LogSettings, MaxQueue, PortfolioSettings, Quota, RedisSettings, Role,
    SandboxSettings, SenderSettings, Settings, SuppressionSettings, WabaSettings, WebhookSettings,
    WorkerSettings, callback_host_allowed,
};

/// Where `--config` points when it is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/gateway.toml";
