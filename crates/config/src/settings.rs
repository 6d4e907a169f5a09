//! The checked configuration every process runs on, and how it is loaded:
//! file → environment overrides → serde shape → cross-field checks →
//! secrets from the environment.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_domain::OutboundMessage;
use secrecy::SecretString;

use crate::env::Environment;
use crate::error::ConfigError;
use crate::file::{
    CallbacksSection, ClientSection, FileConfig, LogSection, PortfolioSection, SenderSection,
    SubscriberSection, SuppressionsSection, WabaSection,
};

/// Which process is starting: each needs a different set of secrets (the
/// ops commands, for one, need none of the senders' access tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
    Sandbox,
    /// Everything in one process (`gateway dev`).
    Dev,
    /// Command-line tools that only talk to Redis.
    Ops,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub worker: WorkerSettings,
    pub redis: RedisSettings,
    pub graph: GraphSettings,
    pub webhook: WebhookSettings,
    pub sandbox: SandboxSettings,
    pub senders: Vec<Arc<SenderSettings>>,
    pub clients: Vec<ClientSettings>,
    pub subscribers: Vec<SubscriberSettings>,
    pub notify: NotifySettings,
    pub callbacks: CallbackSettings,
    /// WABAs whose numbers share a rate (`[[wabas]]`).
    pub wabas: Vec<Arc<WabaSettings>>,
    /// Business portfolios whose messaging limit the gateway keeps.
    pub portfolios: Vec<Arc<PortfolioSettings>>,
    pub suppressions: SuppressionSettings,
    pub log: LogSettings,
}

/// `[suppressions]`: what users say by keyword, and how long a number
/// that is not on WhatsApp (131026) is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionSettings {
    /// An inbound message that is one of these opts the user out of marketing.
    pub opt_out_keywords: Vec<String>,
    /// ... and one of these back in.
    pub opt_in_keywords: Vec<String>,
    pub not_on_whatsapp_for: Duration,
}

/// A WABA whose numbers' sends, summed, stay under `rate_per_second`
/// (`[[wabas]]`), on top of each number's own rate. Meta counts throughput
/// per number; this cap is the business's own (a budget, or a WABA whose
/// numbers sit on several tiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WabaSettings {
    pub id: String,
    pub rate_per_second: u32,
}

/// A business portfolio (`[portfolios]`): the unique users its numbers
/// start conversations with, outside an open window, in a moving 24 h, are
/// capped by Meta's messaging limit, shared by all its WABAs' numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioSettings {
    /// The business portfolio's (business manager's) id.
    pub id: String,
    pub wabas: Vec<String>,
    /// The limit to keep instead of the one Meta reports.
    pub limit_override: Option<u64>,
    /// New conversations are held once this share of the limit is used.
    pub hold_at: f64,
    /// How far back a conversation counts: Meta's moving 24 h.
    pub window: Duration,
}

impl PortfolioSettings {
    /// How many unique users may be counted before new ones are held.
    pub fn hold_after(&self, limit: u64) -> u64 {
        (limit as f64 * self.hold_at).floor() as u64
    }
}

/// How a process logs (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing` filter directives: a level (`info`) or
    /// `info,gateway_worker=debug`. `RUST_LOG`, when set, wins.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, span fields included.
    Json,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// Where `/metrics` is served when not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub listen: SocketAddr,
    /// Stream entries read per XREADGROUP.
    pub batch_size: usize,
    /// At most this many messages of one sender (per priority) are held in
    /// memory; fewer for most senders (what its calls in flight need plus
    /// half a second of sending, at least 16), so a worker owning many
    /// senders stays small.
    pub read_ahead: usize,
    /// Graph API calls one sender may have open at once, at most; fewer
    /// for most senders (its rate times Meta's answer time, with headroom).
    pub max_in_flight_per_sender: usize,
    /// Graph API calls the whole worker may have open at once: bounds its
    /// memory however many senders it owns.
    pub max_in_flight: usize,
    /// A message that cannot go within this (pair limit, a retry's
    /// backoff) leaves memory and waits in Redis with its due time.
    pub park_after: Duration,
    /// The longest one send can take once started: the window read (a
    /// Redis answer), the Graph API call, and a margin. A send starts only
    /// while the sender's lease covers this.
    pub longest_send: Duration,
    /// The longest the Graph API call alone can take, with the margin: the
    /// lease must still cover this just before the call.
    pub longest_call: Duration,
    /// How long a sender's lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often leases are renewed and ownership rebalanced.
    pub lease_renew: Duration,
    /// At most `pair_burst` messages per `pair_interval` to one recipient.
    pub pair_interval: Duration,
    pub pair_burst: u32,
    /// Sends tried per message before it fails.
    pub max_attempts: u32,
    /// How long a stopping worker waits for its sends in flight.
    pub shutdown_grace: Duration,
    /// A free-form message goes out only if the recipient's window stays
    /// open at least this long; else the fallback template goes.
    pub window_margin: Duration,
    /// A sender whose number Meta rates RED sends no bulk messages (they
    /// stay queued) until the rating is YELLOW or GREEN again;
    /// transactional ones go on.
    pub hold_bulk_on_red_quality: bool,
}

/// Added to the Graph API's timeout for what a call costs around it.
pub const CALL_MARGIN: Duration = Duration::from_millis(500);

/// Between the end of the last send a worker may have in flight and the
/// moment its lease can lapse (the worker's lease module keeps to it).
pub const LEASE_SAFETY_MARGIN: Duration = Duration::from_millis(1_500);

/// A lease must cover the longest send right after a renewal, or sends
/// would never start; a handover must wait for a send in flight, or it
/// would cut off one that Meta may accept.
fn covers_the_longest_send(worker: &WorkerSettings) -> Result<(), ConfigError> {
    let ms = |d: Duration| d.as_millis();
    // Twice the renewal: a renewal a little late must not stop the sends.
    let needed = worker.longest_send + LEASE_SAFETY_MARGIN + worker.lease_renew * 2;
    if worker.lease_ttl < needed {
        return Err(ConfigError::invalid(
            "worker.lease_ttl_ms",
            format!(
                "must be at least graph.timeout_ms + redis.response_timeout_ms + {} + {} + \
                 twice worker.lease_renew_ms = {} (a lease must cover the longest send)",
                ms(CALL_MARGIN),
                ms(LEASE_SAFETY_MARGIN),
                ms(needed)
            ),
        ));
    }
    if worker.shutdown_grace < worker.longest_send {
        return Err(ConfigError::invalid(
            "worker.shutdown_grace_ms",
            format!(
                "must be at least graph.timeout_ms + redis.response_timeout_ms + {} = {} \
                 (a handover waits for the sends in flight)",
                ms(CALL_MARGIN),
                ms(worker.longest_send)
            ),
        ));
    }
    Ok(())
}

impl WorkerSettings {
    /// How far back a recipient counts as messaged for the pair limit:
    /// `pair_interval` times `pair_burst`.
    pub fn pair_window(&self) -> Duration {
        self.pair_interval.saturating_mul(self.pair_burst)
    }
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// How long a message record (and its status history) is kept.
    pub record_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// Without a trailing slash.
    pub base_url: String,
    pub version: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub verify_token_env: String,
    pub app_secret_envs: Vec<String>,
    pub verify_token: Option<SecretString>,
    /// Every secret a webhook may be signed with (one per Meta app, or old
    /// and new during a rotation); those whose variable is unset are left out.
    pub app_secrets: Vec<SecretString>,
    pub max_body_bytes: usize,
    /// Entries the events stream may hold; a webhook that finds it full is
    /// answered 503 and not stored (Meta retries for days).
    pub max_backlog: u64,
}

/// An internal service that gets inbound messages and statuses, signed.
#[derive(Debug, Clone)]
pub struct SubscriberSettings {
    pub name: String,
    pub url: String,
    pub secret_env: String,
    pub secret: Option<SecretString>,
    pub messages: bool,
    pub statuses: bool,
}

/// How events are delivered to subscribers and callback URLs.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    /// Notifications that may wait (to deliver, or to retry); a new one
    /// that finds this many is dropped and counted.
    pub max_backlog: u64,
}

#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub listen: SocketAddr,
    pub webhook_url: Option<String>,
}

#[derive(Debug)]
pub struct SenderSettings {
    pub name: String,
    pub phone_number_id: String,
    pub waba_id: String,
    /// The variable the token is read from, for messages that name it.
    pub access_token_env: String,
    /// Present whenever the role needs it (checked at load).
    pub access_token: Option<SecretString>,
    pub rate_per_second: u32,
    /// The template sent when a free-form message meets a closed window.
    pub fallback_template: Option<OutboundMessage>,
    /// A message older than this is not sent (it ends `expired`).
    pub max_age: Duration,
    /// Admission control: the longest predicted wait per priority.
    pub max_queue: MaxQueue,
}

/// The longest wait in line `/send` accepts a message into, per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxQueue {
    pub transactional: Duration,
    pub bulk: Duration,
}

impl MaxQueue {
    pub fn for_lane(&self, lane: gateway_domain::Lane) -> Duration {
        match lane {
            gateway_domain::Lane::Bulk => self.bulk,
            _ => self.transactional,
        }
    }
}

/// A quota on what a client sends; `None` for a limit it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    pub rate_per_second: Option<u32>,
    pub per_day: Option<u64>,
}

/// `[callbacks]`: where status callbacks and subscriber deliveries may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSettings {
    /// `callback_url` and subscriber URLs must be `https://`.
    pub require_https: bool,
    /// Loopback, private, link-local, shared and metadata addresses may be
    /// called (a local receiver in development); refused otherwise, also
    /// when a name resolves to one at delivery time.
    pub allow_private_addresses: bool,
    /// A receiver's answer is read at most this far.
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub name: String,
    /// The variable the key is read from.
    pub key_env: String,
    pub key: Option<SecretString>,
    /// phone_number_ids of the senders this client may use.
    pub senders: Vec<String>,
    /// Quota: messages per second, all of its senders together.
    pub rate_per_second: Option<u32>,
    /// Quota: messages per UTC day, all of its senders together.
    pub per_day: Option<u64>,
    /// Quotas through one sender, by phone_number_id (under the ones above).
    pub sender_quotas: Vec<(String, Quota)>,
    /// Hosts a `callback_url` may name, lowercase; a host matches an entry
    /// equal to it or ending in `.` + the entry. Empty: any host.
    pub callback_hosts: Vec<String>,
    /// Sees and acts on every client's messages, not only its own.
    pub admin: bool,
}

impl ClientSettings {
    /// Whether `host` (lowercase) is one of [`Self::callback_hosts`] or
    /// under one of them.
    pub fn allows_callback_host(&self, host: &str) -> bool {
        callback_host_allowed(&self.callback_hosts, host)
    }
}

/// Whether `host` (lowercase) is one of `allowed` or under one of them;
/// an empty list allows any host.
pub fn callback_host_allowed(allowed: &[String], host: &str) -> bool {
    allowed.is_empty()
        || allowed.iter().any(|allowed| {
            host == allowed
                || host
                    .strip_suffix(allowed.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        })
}

/// The throughput Meta allows at most (the top tier); more is a typo.
const MAX_RATE_PER_SECOND: u32 = 1_000;

impl Settings {
    /// Reads the file at `path`, applies overrides from `env`, and checks
    /// everything `role` needs.
    pub fn load(path: &str, env: &Environment, role: Role) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path, env, role)
    }

    /// As [`Settings::load`], from the file's text (`origin` names it in errors).
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: &Environment,
        role: Role,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: origin.to_owned(),
                    message: e.to_string(),
                })?;
        apply_overrides(&mut table, env)?;
        let file: FileConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::invalid(e.path().to_string(), e.inner().to_string()))?;
        Self::check(file, env, role)
    }

    /// Every environment variable the file names for a secret.
    pub fn secret_variables(&self) -> Vec<&str> {
        let mut names = vec![self.webhook.verify_token_env.as_str()];
        names.extend(self.webhook.app_secret_envs.iter().map(String::as_str));
        names.extend(self.senders.iter().map(|s| s.access_token_env.as_str()));
        names.extend(self.clients.iter().map(|c| c.key_env.as_str()));
        names.extend(self.subscribers.iter().map(|s| s.secret_env.as_str()));
        names
    }

    /// The WABA rate `sender` shares with its WABA's other numbers, if any.
    pub fn waba_cap(&self, sender: &SenderSettings) -> Option<&Arc<WabaSettings>> {
        self.wabas.iter().find(|w| w.id == sender.waba_id)
    }

    /// The portfolio whose messaging limit covers `sender`, if any.
    pub fn portfolio_of(&self, sender: &SenderSettings) -> Option<&Arc<PortfolioSettings>> {
        self.portfolios
            .iter()
            .find(|p| p.wabas.contains(&sender.waba_id))
    }

    /// The sender with this name or phone_number_id.
    pub fn sender(&self, name_or_id: &str) -> Option<&Arc<SenderSettings>> {
        self.senders
            .iter()
            .find(|s| s.name == name_or_id || s.phone_number_id == name_or_id)
    }

    fn check(file: FileConfig, env: &Environment, role: Role) -> Result<Self, ConfigError> {
        // The api uploads and downloads media with the senders' tokens.
        let needs_tokens = matches!(role, Role::Api | Role::Worker | Role::Sandbox | Role::Dev);
        // Workers sign callbacks with the key of the client that sent the message.
        let needs_client_keys = matches!(role, Role::Api | Role::Worker | Role::Dev);
        let needs_subscriber_secrets = matches!(role, Role::Worker | Role::Dev);

        let api = ApiSettings {
            listen: socket_addr("api.listen", &file.api.listen)?,
            metrics_listen: file
                .api
                .metrics_listen
                .as_deref()
                .map(|addr| socket_addr("api.metrics_listen", addr))
                .transpose()?,
            max_body_bytes: at_least("api.max_body_bytes", file.api.max_body_bytes, 1_024)?,
            max_batch_items: at_least("api.max_batch_items", file.api.max_batch_items, 1)?,
        };
        let worker = WorkerSettings {
            listen: socket_addr("worker.listen", &file.worker.listen)?,
            batch_size: at_least("worker.batch_size", file.worker.batch_size, 1)?,
            read_ahead: at_least("worker.read_ahead", file.worker.read_ahead, 1)?,
            max_in_flight_per_sender: at_least(
                "worker.max_in_flight_per_sender",
                file.worker.max_in_flight_per_sender,
                1,
            )?,
            max_in_flight: at_least("worker.max_in_flight", file.worker.max_in_flight, 1)?,
            lease_ttl: Duration::from_millis(at_least(
                "worker.lease_ttl_ms",
                file.worker.lease_ttl_ms,
                2_000,
            )?),
            lease_renew: millis("worker.lease_renew_ms", file.worker.lease_renew_ms)?,
            pair_interval: millis("worker.pair_interval_ms", file.worker.pair_interval_ms)?,
            pair_burst: at_least("worker.pair_burst", file.worker.pair_burst, 1)?,
            max_attempts: at_least("worker.max_attempts", file.worker.max_attempts, 1)?,
            shutdown_grace: millis("worker.shutdown_grace_ms", file.worker.shutdown_grace_ms)?,
            window_margin: Duration::from_secs(file.worker.window_margin_seconds.min(3_600)),
            park_after: Duration::from_millis(file.worker.park_after_ms.min(60_000)),
            hold_bulk_on_red_quality: file.worker.hold_bulk_on_red_quality,
            // Set below, from the Graph API's and Redis's timeouts.
            longest_send: Duration::ZERO,
            longest_call: Duration::ZERO,
        };
        // A lease must outlive several renewals, and a worker stops sending
        // 1.5 s before its lease runs out (see the worker's lease module).
        if worker.lease_renew * 2 >= worker.lease_ttl.saturating_sub(LEASE_SAFETY_MARGIN) {
            return Err(ConfigError::invalid(
                "worker.lease_renew_ms",
                "must be less than half of (worker.lease_ttl_ms - 1500)",
            ));
        }
        let redis = RedisSettings {
            url: redis_url(&file.redis.url)?,
            connect_timeout: millis("redis.connect_timeout_ms", file.redis.connect_timeout_ms)?,
            response_timeout: millis("redis.response_timeout_ms", file.redis.response_timeout_ms)?,
            record_ttl: Duration::from_secs(at_least(
                "redis.record_ttl_seconds",
                file.redis.record_ttl_seconds,
                60,
            )?),
        };
        let graph = GraphSettings {
            base_url: http_url("graph.base_url", &file.graph.base_url)?,
            version: graph_version(&file.graph.version)?,
            timeout: millis("graph.timeout_ms", file.graph.timeout_ms)?,
        };
        let mut worker = worker;
        worker.longest_call = graph.timeout + CALL_MARGIN;
        worker.longest_send = worker.longest_call + redis.response_timeout;
        covers_the_longest_send(&worker)?;
        let app_secret_envs = file.webhook.app_secret_env.into_vec();
        let mut app_secrets = Vec::new();
        for name in &app_secret_envs {
            app_secrets.extend(secret(env, "webhook.app_secret_env", name, false)?);
        }
        let webhook = WebhookSettings {
            verify_token: secret(
                env,
                "webhook.verify_token_env",
                &file.webhook.verify_token_env,
                false,
            )?,
            verify_token_env: file.webhook.verify_token_env,
            app_secret_envs,
            app_secrets,
            max_body_bytes: at_least("webhook.max_body_bytes", file.webhook.max_body_bytes, 1_024)?,
            max_backlog: at_least("webhook.max_backlog", file.webhook.max_backlog, 1)?,
        };
        let sandbox = SandboxSettings {
            listen: socket_addr("sandbox.listen", &file.sandbox.listen)?,
            webhook_url: file
                .sandbox
                .webhook_url
                .as_deref()
                .map(|url| http_url("sandbox.webhook_url", url))
                .transpose()?,
        };
        if file.senders.is_empty() {
            return Err(ConfigError::invalid(
                "senders",
                "at least one [[senders]] entry is needed",
            ));
        }
        let senders = file
            .senders
            .into_iter()
            .enumerate()
            .map(|(i, s)| sender(i, s, env, needs_tokens).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        unique("senders", "name", senders.iter().map(|s| s.name.as_str()))?;
        unique(
            "senders",
            "phone_number_id",
            senders.iter().map(|s| s.phone_number_id.as_str()),
        )?;

        let clients = file
            .clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| client(i, c, &senders, env, needs_client_keys))
            .collect::<Result<Vec<_>, _>>()?;
        unique("clients", "name", clients.iter().map(|c| c.name.as_str()))?;
        // A key names its client: two clients with one key would be one.
        unique_secret("clients", "key_env", clients.iter().map(|c| c.key.as_ref()))?;
        if needs_client_keys && clients.is_empty() {
            return Err(ConfigError::invalid(
                "clients",
                "at least one [[clients]] entry is needed",
            ));
        }

        let subscribers = file
            .subscribers
            .into_iter()
            .enumerate()
            .map(|(i, s)| subscriber(i, s, env, needs_subscriber_secrets))
            .collect::<Result<Vec<_>, _>>()?;
        unique(
            "subscribers",
            "name",
            subscribers.iter().map(|s| s.name.as_str()),
        )?;
        let notify = NotifySettings {
            max_attempts: at_least("notify.max_attempts", file.notify.max_attempts, 1)?,
            initial_backoff: millis("notify.initial_backoff_ms", file.notify.initial_backoff_ms)?,
            max_backoff: millis("notify.max_backoff_ms", file.notify.max_backoff_ms)?,
            timeout: millis("notify.timeout_ms", file.notify.timeout_ms)?,
            max_backlog: at_least("notify.max_backlog", file.notify.max_backlog, 1)?,
        };
        let callbacks = callback_settings(file.callbacks)?;
        let suppressions = suppression_settings(file.suppressions)?;
        let portfolios = file
            .portfolios
            .into_iter()
            .map(|(id, p)| portfolio(id, p, &senders).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let wabas = file
            .wabas
            .into_iter()
            .enumerate()
            .map(|(i, w)| waba(i, w, &senders).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        unique("wabas", "id", wabas.iter().map(|w| w.id.as_str()))?;
        unique(
            "portfolios",
            "wabas",
            portfolios
                .iter()
                .flat_map(|p| p.wabas.iter().map(String::as_str)),
        )?;
        if callbacks.require_https {
            for (i, s) in subscribers.iter().enumerate() {
                if !s.url.starts_with("https://") {
                    return Err(ConfigError::invalid(
                        format!("subscribers[{i}].url"),
                        "must be https:// (or set callbacks.require_https = false)",
                    ));
                }
            }
        }
        let log = log_settings(file.log)?;

        Ok(Self {
            api,
            worker,
            redis,
            graph,
            webhook,
            sandbox,
            senders,
            clients,
            subscribers,
            notify,
            callbacks,
            wabas,
            portfolios,
            suppressions,
            log,
        })
    }
}

fn callback_settings(section: CallbacksSection) -> Result<CallbackSettings, ConfigError> {
    Ok(CallbackSettings {
        require_https: section.require_https,
        allow_private_addresses: section.allow_private_addresses,
        max_response_bytes: at_least(
            "callbacks.max_response_bytes",
            section.max_response_bytes,
            1_024,
        )?,
    })
}

fn log_settings(section: LogSection) -> Result<LogSettings, ConfigError> {
    let format = match section.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(
                "log.format",
                format!("{other:?} is not a log format; use \"text\" or \"json\""),
            ));
        }
    };
    let level = section.level.trim().to_ascii_lowercase();
    if !valid_log_directives(&level) {
        return Err(ConfigError::invalid(
            "log.level",
            format!(
                "{:?} is not a log level; use trace, debug, info, warn, error or off, \
                 optionally per module (info,gateway_worker=debug)",
                section.level
            ),
        ));
    }
    Ok(LogSettings { format, level })
}

/// `level` or `target=level`, comma-separated.
fn valid_log_directives(directives: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    !directives.is_empty()
        && directives.split(',').all(|directive| {
            let (target, level) = match directive.split_once('=') {
                Some((target, level)) => (Some(target), level),
                None => (None, directive),
            };
            let target_ok = target.is_none_or(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
            });
            target_ok && LEVELS.contains(&level)
        })
}

fn sender(
    index: usize,
    s: SenderSection,
    env: &Environment,
    needs_token: bool,
) -> Result<SenderSettings, ConfigError> {
    let key = |field: &str| format!("senders[{index}].{field}");
    if !is_name(&s.name) {
        return Err(ConfigError::invalid(
            key("name"),
            "use 1 to 64 characters of a-z, 0-9, '-' and '_'",
        ));
    }
    if s.phone_number_id.is_empty()
        || s.phone_number_id.len() > 32
        || !s.phone_number_id.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ConfigError::invalid(
            key("phone_number_id"),
            "must be digits, as Meta shows it",
        ));
    }
    if s.waba_id.is_empty() || !s.waba_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            key("waba_id"),
            "must be digits, as Meta shows it",
        ));
    }
    if !(1..=MAX_RATE_PER_SECOND).contains(&s.rate_per_second) {
        return Err(ConfigError::invalid(
            key("rate_per_second"),
            format!("must be between 1 and {MAX_RATE_PER_SECOND}"),
        ));
    }
    let fallback_template = s
        .fallback_template
        .as_ref()
        .map(|t| {
            OutboundMessage::template(t)
                .map_err(|e| ConfigError::invalid(key("fallback_template"), e.to_string()))
        })
        .transpose()?;
    let access_token = secret(
        env,
        &key("access_token_env"),
        &s.access_token_env,
        needs_token,
    )?;
    Ok(SenderSettings {
        name: s.name,
        phone_number_id: s.phone_number_id,
        waba_id: s.waba_id,
        access_token_env: s.access_token_env,
        access_token,
        rate_per_second: s.rate_per_second,
        fallback_template,
        max_age: Duration::from_secs(at_least(&key("max_age_seconds"), s.max_age_seconds, 1)?),
        max_queue: MaxQueue {
            transactional: Duration::from_secs(at_least(
                &key("max_queue_seconds.transactional"),
                s.max_queue_seconds.transactional,
                1,
            )?),
            bulk: Duration::from_secs(at_least(
                &key("max_queue_seconds.bulk"),
                s.max_queue_seconds.bulk,
                1,
            )?),
        },
    })
}

fn client(
    index: usize,
    c: ClientSection,
    senders: &[Arc<SenderSettings>],
    env: &Environment,
    needs_key: bool,
) -> Result<ClientSettings, ConfigError> {
    let key = |field: &str| format!("clients[{index}].{field}");
    if !is_name(&c.name) {
        return Err(ConfigError::invalid(
            key("name"),
            "use 1 to 64 characters of a-z, 0-9, '-' and '_'",
        ));
    }
    let allowed = c
        .senders
        .iter()
        .map(|wanted| {
            senders
                .iter()
                .find(|s| &s.name == wanted || &s.phone_number_id == wanted)
                .map(|s| s.phone_number_id.clone())
                .ok_or_else(|| {
                    ConfigError::invalid(key("senders"), format!("no sender is named {wanted:?}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    positive_quota(&key(""), c.rate_per_second, c.per_day)?;
    let sender_quotas = c
        .sender_quotas
        .iter()
        .map(|(name, quota)| {
            let sender = senders
                .iter()
                .find(|s| &s.name == name || &s.phone_number_id == name)
                .filter(|s| allowed.contains(&s.phone_number_id))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        key("sender_quotas"),
                        format!("{name:?} is not one of the client's senders"),
                    )
                })?;
            positive_quota(
                &key(&format!("sender_quotas.{name}.")),
                quota.rate_per_second,
                quota.per_day,
            )?;
            let quota = Quota {
                rate_per_second: quota.rate_per_second,
                per_day: quota.per_day,
            };
            Ok((sender.phone_number_id.clone(), quota))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let callback_hosts = c
        .callback_hosts
        .iter()
        .map(|host| {
            let host = host.trim().trim_start_matches('.').to_ascii_lowercase();
            let valid = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if valid {
                Ok(host)
            } else {
                Err(ConfigError::invalid(
                    key("callback_hosts"),
                    format!("{host:?} is not a host name like hooks.internal.example.com"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientSettings {
        name: c.name,
        key: secret(env, &key("key_env"), &c.key_env, needs_key)?,
        key_env: c.key_env,
        senders: allowed,
        rate_per_second: c.rate_per_second,
        per_day: c.per_day,
        sender_quotas,
        callback_hosts,
        admin: c.admin,
    })
}

fn suppression_settings(section: SuppressionsSection) -> Result<SuppressionSettings, ConfigError> {
    let words = |key: &str, words: Vec<String>| -> Result<Vec<String>, ConfigError> {
        words
            .into_iter()
            .map(|w| {
                let w = w.trim().to_owned();
                if w.is_empty() || w.len() > 64 {
                    Err(ConfigError::invalid(
                        key,
                        "each keyword is 1 to 64 characters",
                    ))
                } else {
                    Ok(w)
                }
            })
            .collect()
    };
    let opt_out_keywords = words("suppressions.opt_out_keywords", section.opt_out_keywords)?;
    let opt_in_keywords = words("suppressions.opt_in_keywords", section.opt_in_keywords)?;
    if let Some(both) = opt_out_keywords
        .iter()
        .find(|w| opt_in_keywords.iter().any(|i| i.eq_ignore_ascii_case(w)))
    {
        return Err(ConfigError::invalid(
            "suppressions.opt_in_keywords",
            format!("{both:?} is also an opt-out keyword"),
        ));
    }
    Ok(SuppressionSettings {
        opt_out_keywords,
        opt_in_keywords,
        not_on_whatsapp_for: Duration::from_secs(at_least(
            "suppressions.not_on_whatsapp_seconds",
            section.not_on_whatsapp_seconds,
            1,
        )?),
    })
}

fn waba(
    index: usize,
    w: WabaSection,
    senders: &[Arc<SenderSettings>],
) -> Result<WabaSettings, ConfigError> {
    let key = |field: &str| format!("wabas[{index}].{field}");
    if !senders.iter().any(|s| s.waba_id == w.id) {
        return Err(ConfigError::invalid(
            key("id"),
            format!("no sender is in WABA {:?}", w.id),
        ));
    }
    Ok(WabaSettings {
        id: w.id,
        rate_per_second: at_least(&key("rate_per_second"), w.rate_per_second, 1)?,
    })
}

fn portfolio(
    id: String,
    p: PortfolioSection,
    senders: &[Arc<SenderSettings>],
) -> Result<PortfolioSettings, ConfigError> {
    let key = |field: &str| format!("portfolios.{id}.{field}");
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            format!("portfolios.{id}"),
            "a portfolio is named by its business id (digits)",
        ));
    }
    if p.wabas.is_empty() {
        return Err(ConfigError::invalid(
            key("wabas"),
            "list at least one WABA id",
        ));
    }
    for waba in &p.wabas {
        if !senders.iter().any(|s| &s.waba_id == waba) {
            return Err(ConfigError::invalid(
                key("wabas"),
                format!("no sender is in WABA {waba:?}"),
            ));
        }
    }
    if !(p.hold_at > 0.0 && p.hold_at <= 1.0) {
        return Err(ConfigError::invalid(
            key("hold_at"),
            "must be a share of the limit, above 0 and at most 1.0",
        ));
    }
    if p.limit_override == Some(0) {
        return Err(ConfigError::invalid(
            key("limit_override"),
            "must be at least 1",
        ));
    }
    let window = Duration::from_secs(at_least(&key("window_seconds"), p.window_seconds, 1)?);
    Ok(PortfolioSettings {
        id,
        wabas: p.wabas,
        limit_override: p.limit_override,
        hold_at: p.hold_at,
        window,
    })
}

/// A quota's limits, where given, must allow something (`prefix` is the
/// key before `rate_per_second` / `per_day`).
fn positive_quota(
    prefix: &str,
    rate_per_second: Option<u32>,
    per_day: Option<u64>,
) -> Result<(), ConfigError> {
    if rate_per_second == Some(0) {
        return Err(ConfigError::invalid(
            format!("{prefix}rate_per_second"),
            "must be at least 1",
        ));
    }
    if per_day == Some(0) {
        return Err(ConfigError::invalid(
            format!("{prefix}per_day"),
            "must be at least 1",
        ));
    }
    Ok(())
}

fn subscriber(
    index: usize,
    s: SubscriberSection,
    env: &Environment,
    needs_secret: bool,
) -> Result<SubscriberSettings, ConfigError> {
    let key = |field: &str| format!("subscribers[{index}].{field}");
    if !is_name(&s.name) {
        return Err(ConfigError::invalid(
            key("name"),
            "use 1 to 64 characters of a-z, 0-9, '-' and '_'",
        ));
    }
    let mut messages = false;
    let mut statuses = false;
    for kind in &s.events {
        match kind.as_str() {
            "messages" => messages = true,
            "statuses" => statuses = true,
            other => {
                return Err(ConfigError::invalid(
                    key("events"),
                    format!("{other:?} is not an event kind; use \"messages\" and/or \"statuses\""),
                ));
            }
        }
    }
    Ok(SubscriberSettings {
        url: http_url(&key("url"), &s.url)?,
        secret: secret(env, &key("secret_env"), &s.secret_env, needs_secret)?,
        name: s.name,
        secret_env: s.secret_env,
        messages,
        statuses,
    })
}

/// Applies `GATEWAY_SECTION__KEY=value` (and `GATEWAY_SENDERS__0__KEY`) on top
/// of the file. Values are read as TOML when they parse as such (numbers,
/// booleans, inline tables), else as strings, so `GATEWAY_REDIS__URL` needs no quotes.
fn apply_overrides(table: &mut toml::Table, env: &Environment) -> Result<(), ConfigError> {
    for (path, raw) in env.overrides() {
        let key = path.join(".");
        let value = parse_override(raw);
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut node = &mut *table;
        for (depth, segment) in parents.iter().enumerate() {
            let child = node
                .entry(segment.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match child {
                toml::Value::Table(t) => t,
                toml::Value::Array(items) => {
                    // Arrays of tables are addressed by index: SENDERS__0__RATE_PER_SECOND.
                    return set_in_array(items, &path[depth + 1..], value, &key);
                }
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        "overrides a value that is not a section",
                    ));
                }
            };
        }
        node.insert(last.clone(), value);
    }
    Ok(())
}

fn set_in_array(
    items: &mut [toml::Value],
    rest: &[String],
    value: toml::Value,
    key: &str,
) -> Result<(), ConfigError> {
    let bad = || {
        ConfigError::invalid(
            key,
            "expected GATEWAY_<ARRAY>__<INDEX>__<KEY> with an existing index",
        )
    };
    let [index, field] = rest else {
        return Err(bad());
    };
    let index: usize = index.parse().map_err(|_| bad())?;
    match items.get_mut(index) {
        Some(toml::Value::Table(t)) => {
            t.insert(field.clone(), value);
            Ok(())
        }
        _ => Err(bad()),
    }
}

fn parse_override(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn secret(
    env: &Environment,
    key: &str,
    variable: &str,
    required: bool,
) -> Result<Option<SecretString>, ConfigError> {
    match env.get(variable).filter(|v| !v.is_empty()) {
        Some(value) => Ok(Some(SecretString::from(value.to_owned()))),
        None if required => Err(ConfigError::MissingSecret {
            key: key.to_owned(),
            variable: variable.to_owned(),
        }),
        None => Ok(None),
    }
}

fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn unique<'a>(
    section: &str,
    field: &str,
    values: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, value) in values.enumerate() {
        if !seen.insert(value) {
            return Err(ConfigError::invalid(
                format!("{section}[{i}].{field}"),
                format!("{value:?} is used twice"),
            ));
        }
    }
    Ok(())
}

/// Like [`unique`], for secrets: the error names the entry, never the value.
fn unique_secret<'a>(
    section: &str,
    field: &str,
    values: impl Iterator<Item = Option<&'a SecretString>>,
) -> Result<(), ConfigError> {
    use secrecy::ExposeSecret;
    let mut seen = HashSet::new();
    for (i, value) in values.enumerate() {
        if let Some(value) = value
            && !seen.insert(value.expose_secret())
        {
            return Err(ConfigError::invalid(
                format!("{section}[{i}].{field}"),
                "holds the same key as an earlier client; each client needs its own",
            ));
        }
    }
    Ok(())
}

fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{value:?} is not an address like 0.0.0.0:8080"),
        )
    })
}

fn at_least<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    min: T,
) -> Result<T, ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(key, format!("must be at least {min}")));
    }
    Ok(value)
}

fn millis(key: &str, value: u64) -> Result<Duration, ConfigError> {
    at_least(key, value, 1).map(Duration::from_millis)
}

fn http_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError::invalid(
            key,
            format!("{value:?} is not an http(s) URL"),
        )),
    }
}

fn redis_url(value: &str) -> Result<String, ConfigError> {
    // `redis+cluster://host1:7000,host2:7001` (or `rediss+cluster://`) is a
    // Redis Cluster reached through any of the nodes listed.
    let known = [
        "redis://",
        "rediss://",
        "unix://",
        "redis+unix://",
        "redis+cluster://",
        "rediss+cluster://",
    ];
    if known.iter().any(|scheme| value.starts_with(scheme)) {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::invalid(
            "redis.url",
            "must start with redis://, rediss://, unix:// or redis+cluster:// (a cluster)",
        ))
    }
}

fn graph_version(value: &str) -> Result<String, ConfigError> {
    let valid = value
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .bytes()
                    .chain(minor.bytes())
                    .all(|b| b.is_ascii_digit())
        });
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::invalid(
            "graph.version",
            format!("{value:?} is not a version like v25.0"),
        ))
    }
}

#[cfg(test)]
#[path = "settings/tests.rs"]
mod tests;
