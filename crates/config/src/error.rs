//! Why configuration could not be loaded. Every variant names the key (as a
//! dotted path such as `senders[0].rate_per_second`) or the file.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error(
        "config key `{key}`: environment variable {variable} is not set (secrets are never read from the file)"
    )]
    MissingSecret { key: String, variable: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
