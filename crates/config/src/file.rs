//! The file as written: the serde shape of `gateway.toml`. Unknown keys are
//! errors so a typo stops start-up instead of being ignored. Checks that need
//! more than one field, and secret resolution, happen in `settings`.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub worker: WorkerSection,
    #[serde(default)]
    pub redis: RedisSection,
    #[serde(default)]
    pub graph: GraphSection,
    #[serde(default)]
    pub webhook: WebhookSection,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub senders: Vec<SenderSection>,
    #[serde(default)]
    pub clients: Vec<ClientSection>,
    #[serde(default)]
    pub subscribers: Vec<SubscriberSection>,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub callbacks: CallbacksSection,
    #[serde(default)]
    pub suppressions: SuppressionsSection,
    /// WABAs whose numbers share a rate.
    #[serde(default)]
    pub wabas: Vec<WabaSection>,
    /// Business portfolios by id, for the messaging-limit guard.
    #[serde(default)]
    pub portfolios: std::collections::BTreeMap<String, PortfolioSection>,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ApiSection {
    pub listen: String,
    /// `/metrics` on its own address (an ops network) instead of `listen`.
    pub metrics_listen: Option<String>,
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            metrics_listen: None,
            max_body_bytes: 262_144,
            max_batch_items: 1_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WorkerSection {
    pub listen: String,
    pub batch_size: usize,
    pub read_ahead: usize,
    pub max_in_flight_per_sender: usize,
    pub max_in_flight: usize,
    pub lease_ttl_ms: u64,
    pub lease_renew_ms: u64,
    pub pair_interval_ms: u64,
    pub pair_burst: u32,
    pub max_attempts: u32,
    pub shutdown_grace_ms: u64,
    pub window_margin_seconds: u64,
    pub park_after_ms: u64,
    pub hold_bulk_on_red_quality: bool,
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9090".into(),
            batch_size: 64,
            read_ahead: 1_024,
            max_in_flight_per_sender: 1_024,
            max_in_flight: 2_048,
            lease_ttl_ms: 20_000,
            lease_renew_ms: 1_000,
            pair_interval_ms: 6_000,
            pair_burst: 1,
            max_attempts: 8,
            shutdown_grace_ms: 16_000,
            window_margin_seconds: 60,
            park_after_ms: 250,
            hold_bulk_on_red_quality: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RedisSection {
    pub url: String,
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub record_ttl_seconds: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            connect_timeout_ms: 1_000,
            response_timeout_ms: 5_000,
            record_ttl_seconds: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GraphSection {
    pub base_url: String,
    pub version: String,
    pub timeout_ms: u64,
}

impl Default for GraphSection {
    fn default() -> Self {
        Self {
            base_url: "https://graph.facebook.com".into(),
            version: "v25.0".into(),
            timeout_ms: 10_000,
        }
    }
}

/// What may wait in Redis for a consumer, in entries, before new webhooks
/// are refused (`webhook.max_backlog`) or new notifications dropped
/// (`notify.max_backlog`): far above a healthy backlog, far below what
/// exhausts a Redis's memory.
const DEFAULT_MAX_BACKLOG: u64 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WebhookSection {
    pub verify_token_env: String,
    /// One variable name, or several when more than one Meta app (or a
    /// rotation) signs webhooks.
    pub app_secret_env: OneOrMany,
    pub max_body_bytes: usize,
    pub max_backlog: u64,
}

impl Default for WebhookSection {
    fn default() -> Self {
        Self {
            verify_token_env: "WA_VERIFY_TOKEN".into(),
            app_secret_env: OneOrMany::One("WA_APP_SECRET".into()),
            // Meta's payloads go up to 3 MB.
            max_body_bytes: 3 * 1024 * 1024,
            max_backlog: DEFAULT_MAX_BACKLOG,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SandboxSection {
    pub listen: String,
    pub webhook_url: Option<String>,
}

impl Default for SandboxSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            webhook_url: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SenderSection {
    pub name: String,
    pub phone_number_id: String,
    pub waba_id: String,
    pub access_token_env: String,
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    #[serde(default)]
    pub fallback_template: Option<serde_json::Value>,
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
    #[serde(default)]
    pub max_queue_seconds: MaxQueueSection,
}

/// Admission control: the longest predicted wait, per priority, at which
/// `/send` still accepts a message for the sender.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MaxQueueSection {
    pub transactional: u64,
    pub bulk: u64,
}

impl Default for MaxQueueSection {
    fn default() -> Self {
        // A transactional message (a code, a receipt) is stale within
        // minutes; a campaign may take hours.
        Self {
            transactional: 300,
            bulk: 14_400,
        }
    }
}

fn default_rate() -> u32 {
    70
}

fn default_max_age() -> u64 {
    24 * 3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientSection {
    pub name: String,
    pub key_env: String,
    pub senders: Vec<String>,
    /// Messages per second, all of the client's senders together.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Messages per UTC day, all of the client's senders together.
    #[serde(default)]
    pub per_day: Option<u64>,
    /// Quotas for one of its senders, by the sender's name or phone_number_id.
    #[serde(default)]
    pub sender_quotas: std::collections::BTreeMap<String, QuotaSection>,
    /// Hosts (suffix match) a `callback_url` may name; empty: any host.
    #[serde(default)]
    pub callback_hosts: Vec<String>,
    /// May read, replay and cancel every client's messages.
    #[serde(default)]
    pub admin: bool,
}

/// `[suppressions]`: inbound keywords and how long a number not on
/// WhatsApp is left alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SuppressionsSection {
    pub opt_out_keywords: Vec<String>,
    pub opt_in_keywords: Vec<String>,
    pub not_on_whatsapp_seconds: u64,
}

impl Default for SuppressionsSection {
    fn default() -> Self {
        Self {
            opt_out_keywords: ["STOP", "UNSUBSCRIBE", "PARAR", "BAJA"]
                .map(String::from)
                .to_vec(),
            opt_in_keywords: vec!["START".into()],
            not_on_whatsapp_seconds: 30 * 24 * 3600,
        }
    }
}

/// One WABA whose numbers' sends are capped together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WabaSection {
    pub id: String,
    pub rate_per_second: u32,
}

/// One business portfolio: its WABAs share its messaging limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PortfolioSection {
    pub wabas: Vec<String>,
    /// Unique users per moving 24 h, instead of what Meta reports.
    #[serde(default)]
    pub limit_override: Option<u64>,
    /// Hold new business-initiated conversations at this share of the limit.
    #[serde(default = "default_hold_at")]
    pub hold_at: f64,
    /// The moving window Meta counts in; shorter only in tests.
    #[serde(default = "default_limit_window_seconds")]
    pub window_seconds: u64,
}

fn default_hold_at() -> f64 {
    1.0
}

fn default_limit_window_seconds() -> u64 {
    24 * 3600
}

/// A quota on what a client sends (through one sender).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaSection {
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    #[serde(default)]
    pub per_day: Option<u64>,
}

/// `[callbacks]`: what a `callback_url` (and a subscriber's URL) may reach.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CallbacksSection {
    pub require_https: bool,
    /// Loopback, private, link-local, shared and metadata ranges.
    pub allow_private_addresses: bool,
    /// A receiver's answer is read up to this many bytes, no further.
    pub max_response_bytes: usize,
}

impl Default for CallbacksSection {
    fn default() -> Self {
        Self {
            require_https: true,
            allow_private_addresses: false,
            max_response_bytes: 65_536,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriberSection {
    pub name: String,
    pub url: String,
    pub secret_env: String,
    #[serde(default = "all_event_kinds")]
    pub events: Vec<String>,
}

fn all_event_kinds() -> Vec<String> {
    vec!["messages".into(), "statuses".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NotifySection {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: u64,
    pub max_backlog: u64,
}

impl Default for NotifySection {
    fn default() -> Self {
        Self {
            max_attempts: 15,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            timeout_ms: 5_000,
            max_backlog: DEFAULT_MAX_BACKLOG,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    /// `text` (for people) or `json` (one object per line, for collectors).
    pub format: String,
    /// A level (`info`) or `tracing` directives (`info,gateway_worker=debug`);
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}
