//! One module per subcommand.

pub mod api;
pub mod check_config;
pub mod dev;
pub mod dlq;
pub mod doctor;
pub mod message;
pub mod sandbox;
pub mod senders;
pub mod stats;
pub mod suppressions;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use gateway_config::{Environment, Role, SenderSettings, Settings};
pub use gateway_domain::clock::unix_ms;
use gateway_queue::Queue;

/// Loads the configuration for `role` from the file and this process's environment.
pub fn load_settings(path: &str, role: Role) -> anyhow::Result<Settings> {
    let settings =
        Settings::load(path, &Environment::from_process(), role).context("configuration")?;
    apply_log_settings(&settings);
    Ok(settings)
}

/// The `[log]` section, applied to the logger `main` installed.
pub fn apply_log_settings(settings: &Settings) {
    gateway_telemetry::configure_logging(
        settings.log.format == gateway_config::LogFormat::Json,
        &settings.log.level,
    );
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
    )?
    .remembering_recipients_for(settings.worker.pair_window()))
}

/// The Redis connection for an ops command, checked: a command fails at
/// once, naming the server (never its password), when Redis does not answer.
pub async fn ops_queue(settings: &Settings) -> anyhow::Result<Queue> {
    let url = redacted_url(&settings.redis.url);
    let queue = queue(settings).with_context(|| format!("redis.url {url}"))?;
    queue
        .ping()
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    Ok(queue)
}

/// Context for a Redis error met after [`ops_queue`] succeeded.
pub fn redis_context(settings: &Settings) -> String {
    format!("Redis at {}", redacted_url(&settings.redis.url))
}

/// The URL with any password replaced by `***`
/// (`redis://user:***@host:6379/0`).
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        // A password may also ride in the query (`?password=...`).
        return redact_query(url);
    };
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None if userinfo.is_empty() => String::new(),
        // `redis://secret@host`: a lone userinfo is the password.
        None => "***".to_owned(),
    };
    let at = if user.is_empty() { "" } else { "@" };
    redact_query(&format!("{scheme}://{user}{at}{host}{path}"))
}

fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// An error already reported on stdout (a `check-config` verdict): the
/// command exits 1 without printing it again.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported above")
    }
}

impl std::error::Error for AlreadyReported {}

/// Unix ms as RFC 3339 in UTC with milliseconds (`2025-01-02T03:04:05.678Z`).
pub fn rfc3339(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let seconds = ms_of_day / 1_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        ms_of_day % 1_000
    )
}

/// A duration in ms for people: `850 ms`, `12.3 s`, `4m 05s`, `3h 02m`, `2d 04h`.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1_000;
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1_000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if ms < 86_400_000 {
        format!("{}h {:02}m", s / 3_600, s / 60 % 60)
    } else {
        format!("{}d {:02}h", s / 86_400, s / 3_600 % 24)
    }
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
