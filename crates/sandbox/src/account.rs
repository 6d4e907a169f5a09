//! The business account around the numbers, as Meta's management endpoints
//! show it: each access token's validity, expiry and scopes
//! (`debug_token`), each number's health (status, quality rating,
//! throughput level, the WABA it belongs to), and which WABAs have the app
//! subscribed to their webhooks (`subscribed_apps`).
//!
//! Everything starts healthy: tokens valid, never expiring, with both
//! WhatsApp scopes; numbers `CONNECTED`, `GREEN`, `STANDARD` throughput;
//! every WABA subscribed. Tests break one thing at a time through the Rust
//! API on `Sandbox` or the `/admin` routes, and a change of quality or
//! throughput (and of a template's status) is reported by a signed webhook
//! as Meta reports it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::NumberConfig;
use crate::locks::{read, write};

/// The scope sends need.
pub const MESSAGING_SCOPE: &str = "whatsapp_business_messaging";
/// The scope the management reads (numbers, templates, subscriptions) need.
pub const MANAGEMENT_SCOPE: &str = "whatsapp_business_management";

/// What `debug_token` says about a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenState {
    /// False once revoked (the password changed, the system user removed).
    pub valid: bool,
    /// Unix seconds; 0 never expires (system-user tokens).
    pub expires_at: i64,
    pub scopes: Vec<String>,
}

impl Default for TokenState {
    fn default() -> Self {
        Self {
            valid: true,
            expires_at: 0,
            scopes: vec![MANAGEMENT_SCOPE.to_owned(), MESSAGING_SCOPE.to_owned()],
        }
    }
}

impl TokenState {
    /// Valid and not expired at `now` (Unix seconds).
    pub fn usable(&self, now: i64) -> bool {
        self.valid && (self.expires_at == 0 || self.expires_at > now)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// How Meta rates a number's recent messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QualityRating {
    #[default]
    Green,
    Yellow,
    Red,
    /// Not rated yet (a new number).
    Unknown,
}

/// A number's throughput level: `STANDARD` is 80 messages per second,
/// `HIGH` 1,000.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThroughputLevel {
    #[default]
    Standard,
    High,
    NotApplicable,
}

/// One number's state as the phone-number node shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberHealth {
    /// The WABA that owns the number now.
    pub waba_id: String,
    /// `CONNECTED`, `DISCONNECTED`, `FLAGGED`, `RESTRICTED`, `BANNED`, `PENDING`, ...
    pub status: String,
    /// Whether the number is registered for the Cloud API: `CLOUD_API`
    /// when it is, `NOT_APPLICABLE` when not.
    pub platform_type: String,
    pub code_verification_status: String,
    pub quality_rating: QualityRating,
    pub throughput: ThroughputLevel,
    /// `TIER_250`, `TIER_2K`, `TIER_10K`, `TIER_100K`, `TIER_UNLIMITED`.
    pub messaging_limit_tier: String,
    pub verified_name: String,
}

impl Default for NumberHealth {
    fn default() -> Self {
        Self {
            waba_id: String::new(),
            status: "CONNECTED".to_owned(),
            platform_type: "CLOUD_API".to_owned(),
            code_verification_status: "VERIFIED".to_owned(),
            quality_rating: QualityRating::Green,
            throughput: ThroughputLevel::Standard,
            messaging_limit_tier: "TIER_2K".to_owned(),
            verified_name: "Sandbox Business".to_owned(),
        }
    }
}

/// A change to a number's health; fields left out stay as they are.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumberHealthChange {
    pub waba_id: Option<String>,
    pub status: Option<String>,
    pub platform_type: Option<String>,
    pub quality_rating: Option<QualityRating>,
    pub throughput: Option<ThroughputLevel>,
    pub messaging_limit_tier: Option<String>,
}

/// Messages per second of Meta's `HIGH` throughput level.
const HIGH_THROUGHPUT: u32 = 1_000;

#[derive(Debug)]
pub(crate) struct Account {
    tokens: RwLock<HashMap<String, TokenState>>,
    /// Tokens changed since start: empty unless a test breaks one, so the
    /// send path checks a map it never finds anything in.
    changed_tokens: RwLock<bool>,
    numbers: RwLock<HashMap<String, NumberHealth>>,
    /// WABA id → whether the app is subscribed to its webhooks.
    subscribed: RwLock<HashMap<String, bool>>,
}

impl Account {
    pub(crate) fn new(numbers: &[NumberConfig]) -> Self {
        Self {
            tokens: RwLock::new(
                numbers
                    .iter()
                    .map(|n| (n.access_token.clone(), TokenState::default()))
                    .collect(),
            ),
            changed_tokens: RwLock::new(false),
            numbers: RwLock::new(
                numbers
                    .iter()
                    .map(|n| {
                        // A number configured at Meta's top rate is on the HIGH level.
                        let throughput = if n.rate_per_second >= HIGH_THROUGHPUT {
                            ThroughputLevel::High
                        } else {
                            ThroughputLevel::Standard
                        };
                        let health = NumberHealth {
                            waba_id: n.waba_id.clone(),
                            throughput,
                            ..NumberHealth::default()
                        };
                        (n.phone_number_id.clone(), health)
                    })
                    .collect(),
            ),
            subscribed: RwLock::new(numbers.iter().map(|n| (n.waba_id.clone(), true)).collect()),
        }
    }

    pub(crate) fn token(&self, token: &str) -> Option<TokenState> {
        read(&self.tokens).get(token).cloned()
    }

    /// Replaces a known token's state; false for a token no number has.
    pub(crate) fn set_token(&self, token: &str, state: TokenState) -> bool {
        let mut tokens = write(&self.tokens);
        let Some(current) = tokens.get_mut(token) else {
            return false;
        };
        *current = state;
        *write(&self.changed_tokens) = true;
        true
    }

    /// Why a send with this (known) token is refused, if it is: expired or
    /// revoked (190), or without the messaging scope (200).
    pub(crate) fn send_refusal(&self, token: &str) -> Option<crate::errors::MetaError> {
        if !*read(&self.changed_tokens) {
            return None;
        }
        let state = self.token(token)?;
        if !state.usable(unix_now()) {
            return Some(crate::errors::MetaError::expired_token());
        }
        (!state.has_scope(MESSAGING_SCOPE))
            .then(|| crate::errors::MetaError::missing_permission(MESSAGING_SCOPE))
    }

    pub(crate) fn number(&self, phone_number_id: &str) -> Option<NumberHealth> {
        read(&self.numbers).get(phone_number_id).cloned()
    }

    /// Numbers owned by `waba_id` now, sorted by id.
    pub(crate) fn numbers_of(&self, waba_id: &str) -> Vec<(String, NumberHealth)> {
        let mut numbers: Vec<_> = read(&self.numbers)
            .iter()
            .filter(|(_, health)| health.waba_id == waba_id)
            .map(|(id, health)| (id.clone(), health.clone()))
            .collect();
        numbers.sort_by(|a, b| a.0.cmp(&b.0));
        numbers
    }

    /// Applies a change; the health before and after, or `None` for an
    /// unknown number.
    pub(crate) fn change_number(
        &self,
        phone_number_id: &str,
        change: NumberHealthChange,
    ) -> Option<(NumberHealth, NumberHealth)> {
        let mut numbers = write(&self.numbers);
        let health = numbers.get_mut(phone_number_id)?;
        let before = health.clone();
        if let Some(waba_id) = change.waba_id {
            health.waba_id = waba_id;
        }
        if let Some(status) = change.status {
            health.status = status;
        }
        if let Some(platform_type) = change.platform_type {
            health.platform_type = platform_type;
        }
        if let Some(quality) = change.quality_rating {
            health.quality_rating = quality;
        }
        if let Some(throughput) = change.throughput {
            health.throughput = throughput;
        }
        if let Some(tier) = change.messaging_limit_tier {
            health.messaging_limit_tier = tier;
        }
        Some((before, health.clone()))
    }

    pub(crate) fn is_subscribed(&self, waba_id: &str) -> bool {
        read(&self.subscribed)
            .get(waba_id)
            .copied()
            .unwrap_or(false)
    }

    pub(crate) fn set_subscribed(&self, waba_id: &str, subscribed: bool) {
        write(&self.subscribed).insert(waba_id.to_owned(), subscribed);
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_at_a_thousand_per_second_is_on_the_high_level() {
        let mut fast = NumberConfig::new("2", "w", "t2");
        fast.rate_per_second = 1_000;
        let account = Account::new(&[NumberConfig::new("1", "w", "t"), fast]);
        let level = |id: &str| account.number(id).map(|n| n.throughput);
        assert_eq!(level("1"), Some(ThroughputLevel::Standard));
        assert_eq!(level("2"), Some(ThroughputLevel::High));
    }

    #[test]
    fn everything_starts_healthy_and_changes_one_field_at_a_time() {
        let account = Account::new(&[NumberConfig::new("1", "w", "t")]);
        let token = account.token("t").expect("known");
        assert!(token.usable(unix_now()));
        assert!(token.has_scope(MESSAGING_SCOPE) && token.has_scope(MANAGEMENT_SCOPE));
        assert!(account.send_refusal("t").is_none());
        assert!(account.is_subscribed("w"));
        let (before, after) = account
            .change_number(
                "1",
                NumberHealthChange {
                    quality_rating: Some(QualityRating::Red),
                    ..NumberHealthChange::default()
                },
            )
            .expect("known number");
        assert_eq!(before.quality_rating, QualityRating::Green);
        assert_eq!(after.quality_rating, QualityRating::Red);
        assert_eq!(after.status, "CONNECTED");

        assert!(account.set_token(
            "t",
            TokenState {
                expires_at: 1,
                ..TokenState::default()
            }
        ));
        assert_eq!(account.send_refusal("t").map(|e| e.code), Some(190));
        assert!(!account.set_token("unknown", TokenState::default()));
    }
}
