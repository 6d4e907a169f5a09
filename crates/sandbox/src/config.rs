//! The sandbox's configuration: the business numbers it serves, its template
//! registry, its user directory, where webhooks go, which rules apply, how
//! status webhooks behave and which faults to inject.
//!
//! Every struct deserializes with defaults, so a TOML or JSON file names only
//! what it changes, and unknown keys are errors rather than silent no-ops.
//! `Rules`, `StatusConfig`, `Faults` and the users can also be replaced at
//! run time (the Rust methods on `Sandbox` and the `/admin` routes).

use serde::{Deserialize, Serialize};

use crate::faults::Faults;
use crate::media::MediaConfig;

/// Meta's default throughput per business number.
pub const DEFAULT_RATE_PER_SECOND: u32 = 80;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    pub numbers: Vec<NumberConfig>,
    pub templates: Vec<TemplateConfig>,
    pub users: Vec<UserConfig>,
    /// Where signed webhooks are POSTed; without it no webhook is sent.
    pub webhook: Option<WebhookTarget>,
    pub rules: Rules,
    pub statuses: StatusConfig,
    pub faults: Faults,
    /// How many accepted sends `Sandbox::accepted` keeps (oldest dropped
    /// first), which bounds the sandbox's memory under load.
    pub record_limit: usize,
    /// Download links and the memory media may take.
    pub media: MediaConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            numbers: Vec::new(),
            templates: vec![
                TemplateConfig::new("hello_world", "en_US", 0),
                TemplateConfig::new("order_update", "en_US", 2),
            ],
            users: Vec::new(),
            webhook: None,
            rules: Rules::default(),
            statuses: StatusConfig::default(),
            faults: Faults::default(),
            record_limit: 1_000_000,
            media: MediaConfig::default(),
        }
    }
}

/// One business phone number, as Meta knows it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberConfig {
    pub phone_number_id: String,
    pub waba_id: String,
    /// The bearer token that may send from this number.
    pub access_token: String,
    #[serde(default = "default_display_phone_number")]
    pub display_phone_number: String,
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
}

impl NumberConfig {
    pub fn new(
        phone_number_id: impl Into<String>,
        waba_id: impl Into<String>,
        access_token: impl Into<String>,
    ) -> Self {
        Self {
            phone_number_id: phone_number_id.into(),
            waba_id: waba_id.into(),
            access_token: access_token.into(),
            display_phone_number: default_display_phone_number(),
            rate_per_second: DEFAULT_RATE_PER_SECOND,
        }
    }
}

fn default_display_phone_number() -> String {
    // Meta's own test numbers live in the 555 range.
    "15550100000".to_owned()
}

fn default_rate() -> u32 {
    DEFAULT_RATE_PER_SECOND
}

/// One approved (or paused, or disabled) template in one language, with
/// its components: what a send must give each of them (Meta answers 132000
/// otherwise), and what `message_templates` lists.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub name: String,
    /// Meta's language code, such as `en_US`.
    pub language: String,
    /// The header's format: `TEXT` (taking `header_parameters`, 0 or 1),
    /// or `IMAGE`, `VIDEO`, `DOCUMENT`, `LOCATION` (one parameter, the
    /// media or place); no header when absent.
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub header_parameters: usize,
    /// How many parameters the body component takes.
    #[serde(default)]
    pub body_parameters: usize,
    /// The buttons, index 0 first.
    #[serde(default)]
    pub buttons: Vec<ButtonConfig>,
    #[serde(default)]
    pub status: TemplateStatus,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`; marketing templates are
    /// the ones the users' marketing flags suppress.
    #[serde(default = "default_category")]
    pub category: String,
}

impl TemplateConfig {
    pub fn new(
        name: impl Into<String>,
        language: impl Into<String>,
        body_parameters: usize,
    ) -> Self {
        Self {
            name: name.into(),
            language: language.into(),
            header: None,
            header_parameters: 0,
            body_parameters,
            buttons: Vec::new(),
            status: TemplateStatus::Approved,
            category: default_category(),
        }
    }

    /// The same with another category (`MARKETING`, `UTILITY`, `AUTHENTICATION`).
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// The same with another status.
    pub fn with_status(mut self, status: TemplateStatus) -> Self {
        self.status = status;
        self
    }

    /// The same with a text header taking `parameters` (0 or 1).
    pub fn with_text_header(mut self, parameters: usize) -> Self {
        self.header = Some("TEXT".into());
        self.header_parameters = parameters;
        self
    }

    /// The same with one more button.
    pub fn with_button(mut self, kind: impl Into<String>, parameters: usize) -> Self {
        self.buttons.push(ButtonConfig {
            kind: kind.into(),
            parameters,
        });
        self
    }

    /// The parameters a send must give the header.
    pub fn header_takes(&self) -> usize {
        match self
            .header
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None => 0,
            Some("TEXT") => self.header_parameters,
            Some(_) => 1,
        }
    }
}

/// One of a template's buttons.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonConfig {
    /// `URL`, `QUICK_REPLY`, `COPY_CODE`, `PHONE_NUMBER` or `OTP`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For a `URL` button, the placeholders in its URL (0 or 1).
    #[serde(default)]
    pub parameters: usize,
}

impl ButtonConfig {
    /// The parameters a send must give this button: `Some(n)` exactly,
    /// `None` any (a quick reply's payload is optional).
    pub fn takes(&self) -> Option<usize> {
        match self.kind.to_ascii_uppercase().as_str() {
            "URL" => Some(self.parameters),
            "COPY_CODE" | "OTP" => Some(1),
            "PHONE_NUMBER" => Some(0),
            _ => None,
        }
    }
}

fn default_category() -> String {
    "UTILITY".to_owned()
}

/// A template's review status, as Meta lists it (`APPROVED`, `PAUSED`, ...);
/// the capitalised names (`Approved`) are accepted too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateStatus {
    #[default]
    #[serde(alias = "APPROVED")]
    Approved,
    #[serde(alias = "PAUSED")]
    Paused,
    #[serde(alias = "DISABLED")]
    Disabled,
    /// Submitted, not reviewed yet: sends get 132001 as for a missing one.
    #[serde(alias = "PENDING")]
    Pending,
    /// Refused at review: sends get 132001 as for a missing one.
    #[serde(alias = "REJECTED")]
    Rejected,
}

impl TemplateStatus {
    /// The name Meta's `message_templates` listing and webhooks use.
    pub fn meta_name(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Paused => "PAUSED",
            Self::Disabled => "DISABLED",
            Self::Pending => "PENDING",
            Self::Rejected => "REJECTED",
        }
    }
}

/// A WhatsApp user the sandbox knows something special about; users not
/// listed are on WhatsApp and accept everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// Phone digits (`16505551234`; `+`, spaces, hyphens and parentheses are
    /// ignored) or a business-scoped user id (`US.13491208655302741918`).
    pub id: String,
    /// Sends end in a `failed` status with 131026.
    pub not_on_whatsapp: bool,
    /// Marketing templates end in a `failed` status with 131050.
    pub marketing_opt_out: bool,
    /// Marketing templates end in a `failed` status with 131049.
    pub marketing_capped: bool,
}

/// Where webhooks go and how hard the sandbox tries to deliver them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    /// Key of the `X-Hub-Signature-256` HMAC.
    pub app_secret: String,
    /// Attempts per POST, the first included, before it is abandoned.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// How long one POST may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WebhookTarget {
    pub fn new(url: impl Into<String>, app_secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            app_secret: app_secret.into(),
            max_attempts: default_max_attempts(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_max_attempts() -> u32 {
    10
}

fn default_retry_initial_ms() -> u64 {
    1_000
}

fn default_retry_max_ms() -> u64 {
    60_000
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Which of Meta's rules the sandbox enforces. All on by default; a rule
/// that is off is skipped entirely (no state is touched), which is also what
/// makes the send path fast for benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Bearer token must be the number's (`190` otherwise).
    pub tokens: bool,
    /// Message content within Meta's limits (`100`, `131008`, `131009`).
    pub validation: bool,
    /// Per-number token bucket (`130429`).
    pub throughput: bool,
    /// Per (number, recipient) burst rule (`131056`).
    pub pair: bool,
    /// 24-hour customer-service window (`131047`).
    pub window: bool,
    /// Template registry (`132000`, `132001`, `132015`, `132016`).
    pub templates: bool,
    /// User directory flags (`131026`, `131049`, `131050`).
    pub users: bool,
    /// Answer 130429 with HTTP 429 instead of Meta's usual 400.
    pub throughput_http_429: bool,
    /// How a free-form send outside the window fails.
    pub window_failure: FailureMode,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            tokens: true,
            validation: true,
            throughput: true,
            pair: true,
            window: true,
            templates: true,
            users: true,
            throughput_http_429: false,
            window_failure: FailureMode::Sync,
        }
    }
}

impl Rules {
    /// Every rule off: any well-formed send to a known number is accepted.
    pub fn off() -> Self {
        Self {
            tokens: false,
            validation: false,
            throughput: false,
            pair: false,
            window: false,
            templates: false,
            users: false,
            ..Self::default()
        }
    }
}

/// Where an error that Meta reports either way shows up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// In the HTTP answer to the send (HTTP 400).
    #[default]
    Sync,
    /// HTTP 200, then a `failed` status webhook.
    Async,
}

/// How status webhooks follow an accepted send. Delays count from the
/// moment of acceptance; rates are probabilities per message in 0..=1.
///
/// `answer_after_status_ms` makes the webhooks outrun the HTTP answer, as
/// Meta's sometimes do: the 200 to an accepted send is held until the POST
/// of the message's first status webhook (`sent`, or `failed` for an
/// asynchronous failure; whichever is posted first when statuses are
/// reordered) has been attempted, and then this many ms more; a status of
/// the message that came due meanwhile (`delivered` and `read` with short
/// delays) is attempted before the answer too. An attempt counts whatever
/// the receiver answers (retries are not waited for). 0, the default, holds
/// nothing: the answer goes at once and the statuses follow their delays.
/// Answers are held only while `Sandbox::serve` delivers webhooks, and a
/// POST not attempted by its due time plus the target's `timeout_ms` and
/// 5 s holds its answer no longer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    pub sent_ms: u64,
    pub delivered_ms: u64,
    pub read_ms: u64,
    /// Share of messages the user reads at all.
    pub read_rate: f64,
    /// Share of messages whose `delivered` never comes (Meta skips it when
    /// delivery and read happen at once).
    pub drop_delivered_rate: f64,
    /// Share of messages whose statuses are posted in reverse order.
    pub reorder_rate: f64,
    /// Share of messages whose statuses are each posted twice.
    pub duplicate_rate: f64,
    /// Most statuses of one number combined in one webhook POST.
    pub batch: usize,
    /// Hold the answer to an accepted send until its first status webhook
    /// has been posted, then this many ms more; 0 is off.
    pub answer_after_status_ms: u64,
    /// Statuses as webhook versions before v24 show conversation-based
    /// pricing: `pricing_model: CBP` and a `conversation` object (`id`,
    /// `origin.type`, and `expiration_timestamp` on `sent`), one
    /// conversation per number, user and category for 24 hours. Off (the
    /// default): per-message pricing (`PMP`, a `type`, no conversation), as
    /// Meta sends since v24.
    pub conversations: bool,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            sent_ms: 10,
            delivered_ms: 100,
            read_ms: 300,
            read_rate: 1.0,
            drop_delivered_rate: 0.0,
            reorder_rate: 0.0,
            duplicate_rate: 0.0,
            batch: 1,
            answer_after_status_ms: 0,
            conversations: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_has_the_two_templates_and_no_numbers() {
        let config = SandboxConfig::default();
        assert!(config.numbers.is_empty());
        let names: Vec<_> = config
            .templates
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.language.as_str(),
                    t.body_parameters,
                    t.status,
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("hello_world", "en_US", 0, TemplateStatus::Approved),
                ("order_update", "en_US", 2, TemplateStatus::Approved)
            ]
        );
        assert_eq!(config.record_limit, 1_000_000);
    }

    #[test]
    fn partial_json_keeps_defaults_and_rejects_unknown_keys() {
        let config: SandboxConfig = serde_json::from_value(serde_json::json!({
            "numbers": [{"phone_number_id": "1", "waba_id": "2", "access_token": "t"}],
            "rules": {"pair": false, "window_failure": "async"}
        }))
        .expect("valid config");
        assert_eq!(config.numbers[0].rate_per_second, 80);
        assert!(!config.rules.pair);
        assert!(config.rules.window);
        assert_eq!(config.rules.window_failure, FailureMode::Async);
        assert_eq!(config.templates.len(), 2);

        let unknown = serde_json::from_value::<SandboxConfig>(serde_json::json!({"rule": {}}));
        assert!(unknown.is_err());
    }

    #[test]
    fn holding_answers_is_off_by_default_and_set_by_its_own_key() {
        assert_eq!(StatusConfig::default().answer_after_status_ms, 0);
        let statuses: StatusConfig =
            serde_json::from_value(serde_json::json!({"answer_after_status_ms": 300}))
                .expect("valid");
        assert_eq!(
            statuses,
            StatusConfig {
                answer_after_status_ms: 300,
                ..StatusConfig::default()
            }
        );
        for bad in [
            serde_json::json!({"answer_after_status": 300}),
            serde_json::json!({"answer_after_status_ms": -300}),
        ] {
            assert!(serde_json::from_value::<StatusConfig>(bad).is_err());
        }
    }
}
