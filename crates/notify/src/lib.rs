//! Notifications: events the gateway forwards to internal HTTP endpoints
//! (configured subscribers and per-message `callback_url`s), signed, retried
//! with backoff, then dead-lettered.
//!
//! [`Notifier`] decides who hears of an event (an inbound message, a status,
//! a cancel) and what its body says. It [`Outbox::push`]es a
//! [`Notification`] (stored in Redis before it
//! returns); [`run`] delivers it: POST of the body with
//! [`TIMESTAMP_HEADER`] and [`SIGNATURE_HEADER`], 2xx = done, anything else
//! retried at growing delays up to [`DeliveryPolicy::max_attempts`], then
//! kept in the dead stream ([`Outbox::dead_letters`],
//! [`Outbox::replay_dead`]). State lives in Redis only (keys: [`outbox`]),
//! so a crashed worker's deliveries are taken over by another: at least
//! once, never silently dropped. What waits is bounded
//! ([`Outbox::with_max_backlog`]): a notification pushed while the backlog
//! is full is dropped, counted and logged, so receivers that stay down
//! cannot fill Redis.
//!
//! Where a delivery may connect is [`Transport`]'s business: a callback
//! never reaches loopback, private, link-local or metadata addresses unless
//! [`CallbackRules::allow_private_addresses`], also when its name resolves
//! to one, and no delivery follows a redirect (see the `transport` module).
//!
//! Secrets never leave [`Signers`]: Redis holds the signer's name, and
//! neither logs, metrics nor errors carry a secret. Metric labels are signer
//! names (bounded by configuration), never URLs.

mod delivery;
mod metrics;
mod notifier;
pub mod outbox;
mod signature;
mod transport;

pub use delivery::{Deliveries, DeliveryPolicy, Signers, run};
pub use metrics::NotifyMetrics;
pub use notifier::{Notifier, signers};
pub use outbox::{DeadNotification, Outbox, OutboxDepth, Replay};
pub use signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify};
pub use transport::{CallbackRules, Transport};

/// The registry [`NotifyMetrics::register`] registers into.
pub use prometheus::Registry;
/// The secret type [`Signers`] holds.
pub use secrecy::SecretString;

use serde::{Deserialize, Serialize};

/// One event to POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Where to POST it.
    pub url: String,
    /// The name of the secret to sign with, e.g. `subscriber:crm` or
    /// `client:billing` (a key of [`Signers`]); never the secret itself.
    /// `subscriber:` marks a configured subscriber, trusted to reach
    /// internal addresses; any other signer is a callback, kept to
    /// [`CallbackRules`].
    pub signer: String,
    /// The JSON body, POSTed byte for byte as given.
    pub body: String,
}

/// What can go wrong talking to Redis. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Redis did not answer, refused, or timed out: the caller may retry later.
    #[error("redis is unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something this code did not write.
    #[error("unexpected data in redis: {0}")]
    Protocol(String),
}
