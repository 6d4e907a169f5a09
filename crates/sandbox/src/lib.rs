//! The sandbox: a local simulator of Meta's WhatsApp Cloud API that the
//! gateway's tests and local demo send to instead of graph.facebook.com.
//!
//! It owns the Graph send route (`POST /{version}/{phone_number_id}/messages`)
//! and the `/admin` routes that control it, and it guarantees Meta's
//! behaviour as `shared/cloud-api.md` ("The sandbox's rules") states it:
//! bearer tokens per number (190), request validation before any limit
//! (100, 131008, 131009), a per-number token bucket shared with inbound
//! messages (130429), the per-recipient pair limit (131056), the 24-hour
//! window (131047, synchronous or as a `failed` status), the template
//! registry (132000 for the header's, the body's or a button's parameter
//! count, 132001, 132015, 132016), user flags ending sends as
//! `failed` (131026, 131049, 131050), Meta's success and error shapes, and
//! signed status and inbound webhooks, retried until the receiver answers
//! 200. Every rule can be switched off (`Rules`) and faults injected
//! (`Faults`). A rejected send uses no quota; memory stays bounded (records,
//! per-user state and queued webhooks all have limits); with the rules off
//! the send path takes no lock but the record's.
//!
//! Beside sends it serves Meta's management reads (`debug_token`, the
//! phone-number node, a WABA's `phone_numbers`, `message_templates` (with
//! components, paged) and `subscribed_apps`; see `account_routes`), all
//! healthy by default and each breakable (`Sandbox::set_token`,
//! `change_number`, `set_subscribed`, `set_template_status`,
//! `set_template_category`, or the matching `/admin` routes), with the
//! `phone_number_quality_update`, `message_template_status_update` and
//! `template_category_update` webhooks Meta sends for such changes.
//!
//! Media as Meta keeps it (`media`, `media_routes`): uploads checked
//! against Meta's types and limits per type, metadata with a download URL
//! that needs the owner's token and expires, deletion; a user can send a
//! file (`Sandbox::inbound_media`), whose webhook carries its `id`,
//! `mime_type` and `sha256`.
//!
//! For window tests, a user message can be dated in the past
//! (`Sandbox::inbound_at`) and a window closed behind the gateway's back
//! (`Sandbox::close_window`). The user directory can be replaced while the
//! sandbox runs (`Sandbox::set_users`).
//!
//! Statuses carry Meta's `pricing`: per message (`PMP`, as since v24:
//! templates billable by category, a utility template free while the
//! user's window is open, free-form replies free), or, with
//! `StatusConfig::conversations`, per conversation as webhook versions
//! before v24 show it (`CBP` and a `conversation` object, one per number,
//! user and category for 24 hours).
//!
//! Meta's status webhooks sometimes outrun its HTTP answer to the send;
//! `StatusConfig::answer_after_status_ms` makes that happen on purpose and
//! in a guaranteed order: the message's first status webhook (`sent`, or
//! `failed`) is POSTed to the target and its answer awaited before the send
//! is answered, and the answer waits that many ms more.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use gateway_sandbox::{NumberConfig, Sandbox, SandboxConfig};
//! let mut config = SandboxConfig::default();
//! config.numbers.push(NumberConfig::new("106540352242922", "102290129340398", "token"));
//! let sandbox = Sandbox::new(config);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn({
//!     let sandbox = sandbox.clone();
//!     let shutdown = shutdown.clone();
//!     async move { sandbox.serve(listener, shutdown).await }
//! });
//! sandbox.inbound("106540352242922", "+16505551234", "hi")
//!     .expect("the number is configured");
//! # Ok(()) }
//! ```

mod account;
mod account_routes;
mod admin_routes;
mod config;
mod connection;
mod engine;
mod errors;
mod faults;
mod graph_routes;
mod ids;
mod locks;
mod media;
mod media_routes;
mod number;
mod random;
mod read_receipts;
mod records;
mod rules;
mod stats;
mod templates;
mod user_id;
mod validation;
mod webhooks;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use account::{
    MANAGEMENT_SCOPE, MESSAGING_SCOPE, NumberHealth, NumberHealthChange, QualityRating,
    ThroughputLevel, TokenState,
};
pub use config::{
    ButtonConfig, DEFAULT_RATE_PER_SECOND, FailureMode, NumberConfig, Rules, SandboxConfig,
    StatusConfig, TemplateConfig, TemplateStatus, UserConfig, WebhookTarget,
};
pub use errors::SandboxError;
pub use faults::Faults;
pub use media::{MediaConfig, MediaFile};
pub use read_receipts::ReadReceipt;
pub use records::AcceptedMessage;
pub use stats::SandboxStats;
/// The header that carries a webhook's signature.
pub use webhooks::delivery::SIGNATURE_HEADER;

use connection::{ConnectionCut, CuttableListener};
use engine::Engine;

/// A running simulator; cheap to clone, every clone is the same sandbox.
#[derive(Clone, Debug)]
pub struct Sandbox {
    engine: Arc<Engine>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            engine: Arc::new(Engine::new(config)),
        }
    }

    /// The Graph API and `/admin` routes. Served by `serve`, dropped
    /// connections are real; served by another server they become a 500
    /// with `Connection: close`, and webhooks are sent only while `serve`
    /// runs.
    pub fn router(&self) -> axum::Router {
        graph_routes::routes()
            .merge(account_routes::routes())
            .merge(media_routes::routes())
            .merge(admin_routes::routes())
            .with_state(Arc::clone(&self.engine))
    }

    /// Serves the routes on `listener` and delivers webhooks, until
    /// `shutdown` is cancelled; then stops accepting, lets requests in flight
    /// finish and abandons webhooks not yet delivered.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let client = webhooks::delivery::client()?;
        let stop = shutdown.child_token();
        let delivery = tokio::spawn(webhooks::delivery::run(
            Arc::clone(&self.engine.webhooks),
            client,
            stop.clone(),
        ));
        let app = self
            .router()
            .into_make_service_with_connect_info::<ConnectionCut>();
        let served = axum::serve(CuttableListener(listener), app)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await;
        stop.cancel();
        if let Err(error) = delivery.await {
            tracing::warn!(%error, "webhook delivery task ended abnormally");
        }
        served
    }

    /// Every accepted send, oldest first (up to `record_limit`).
    pub fn accepted(&self) -> Vec<AcceptedMessage> {
        self.engine.accepted(None)
    }

    /// The read receipts accepted, oldest first.
    pub fn read_receipts(&self) -> Vec<ReadReceipt> {
        self.engine.receipts.accepted()
    }

    pub fn stats(&self) -> SandboxStats {
        self.engine.stats()
    }

    pub fn rules(&self) -> Rules {
        self.engine.rules()
    }

    pub fn set_rules(&self, rules: Rules) {
        self.engine.set_rules(rules);
    }

    /// The faults in force, with the periods that are left.
    pub fn faults(&self) -> Faults {
        self.engine.faults()
    }

    /// Replaces the faults; throttle and maintenance periods start now.
    pub fn set_faults(&self, faults: Faults) {
        self.engine.set_faults(faults);
    }

    pub fn statuses(&self) -> StatusConfig {
        self.engine.webhooks.statuses()
    }

    /// Replaces how status webhooks follow sends accepted from now on
    /// (delays, quirks, batching, and whether answers wait for them).
    pub fn set_statuses(&self, statuses: StatusConfig) {
        self.engine.webhooks.set_statuses(statuses);
    }

    /// The user directory, ordered by id.
    pub fn users(&self) -> Vec<UserConfig> {
        self.engine.users()
    }

    /// Replaces the user directory (not on WhatsApp, marketing flags);
    /// sends accepted from now on follow it.
    pub fn set_users(&self, users: Vec<UserConfig>) {
        self.engine.set_users(users);
    }

    /// Where webhooks go from now on; `None` stops them.
    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        self.engine.webhooks.set_target(target);
    }

    /// A simulated user message: opens the user's window, uses the number's
    /// throughput quota and sends a signed `messages` webhook. `from` is a
    /// phone number in any form `to` accepts, or a BSUID (then the webhook
    /// names the user by `from_user_id` and the window is keyed by it).
    pub fn inbound(
        &self,
        phone_number_id: &str,
        from: &str,
        text: &str,
    ) -> Result<String, SandboxError> {
        self.inbound_at(phone_number_id, from, text, SystemTime::now())
    }

    /// A simulated user message sent at `at`, for windows that are already
    /// closed or about to close: the window is open only until `at` + 24 h,
    /// the webhook's `timestamp` is `at`, and only a message less than a
    /// second old uses throughput quota. A time in the future is taken as now.
    pub fn inbound_at(
        &self,
        phone_number_id: &str,
        from: &str,
        text: &str,
        at: SystemTime,
    ) -> Result<String, SandboxError> {
        self.engine.receive(phone_number_id, from, text, at)
    }

    /// A simulated user message carrying a file of `mime_type` (`image`
    /// for jpeg or png, `sticker` for webp, else `audio`, `video` or
    /// `document`), with a caption (empty: none): as [`inbound`](Self::inbound),
    /// and the file is stored as media the number may download, its
    /// webhook carrying `id`, `mime_type` and `sha256`. Returns the wamid
    /// and the media id.
    pub fn inbound_media(
        &self,
        phone_number_id: &str,
        from: &str,
        mime_type: &str,
        content: impl Into<bytes::Bytes>,
        caption: &str,
    ) -> Result<(String, String), SandboxError> {
        self.engine
            .receive_media(phone_number_id, from, mime_type, content.into(), caption)
    }

    /// A stored media file (uploaded or sent by a user), if it is there.
    pub fn media(&self, media_id: &str) -> Option<MediaFile> {
        self.engine
            .media
            .get(media_id)
            .as_ref()
            .map(MediaFile::from)
    }

    /// Forgets a media file, as Meta does after 30 days or a `DELETE`;
    /// false when there was none.
    pub fn delete_media(&self, media_id: &str) -> bool {
        self.engine.media.delete(media_id)
    }

    /// Replaces how long download URLs work and how much media is kept.
    pub fn set_media(&self, config: MediaConfig) {
        self.engine.media.set_config(config);
    }

    /// Closes a user's window (`user` as for `inbound`) behind the business's
    /// back, as happens when its idea of the window is stale: free-form sends
    /// to that user fail with 131047 until the user writes again. Sends no
    /// webhook, as Meta sends none.
    pub fn close_window(&self, phone_number_id: &str, user: &str) -> Result<(), SandboxError> {
        self.engine.close_window(phone_number_id, user)
    }

    /// What `debug_token` says about a configured token.
    pub fn token(&self, access_token: &str) -> Option<TokenState> {
        self.engine.account.token(access_token)
    }

    /// Expires, revokes or de-scopes a configured token (sends with it then
    /// fail with 190, or 200 without `whatsapp_business_messaging`).
    pub fn set_token(&self, access_token: &str, state: TokenState) -> Result<(), SandboxError> {
        if self.engine.account.set_token(access_token, state) {
            Ok(())
        } else {
            Err(SandboxError::UnknownToken)
        }
    }

    /// A number's status, quality rating, throughput level and WABA now.
    pub fn number_health(&self, phone_number_id: &str) -> Option<NumberHealth> {
        self.engine.account.number(phone_number_id)
    }

    /// Changes a number's health; a changed quality rating, throughput level
    /// or messaging tier sends a signed `phone_number_quality_update` webhook.
    pub fn change_number(
        &self,
        phone_number_id: &str,
        change: NumberHealthChange,
    ) -> Result<NumberHealth, SandboxError> {
        account_routes::change_number(&self.engine, phone_number_id, change)
    }

    /// Subscribes or unsubscribes the app from a WABA's webhooks (what
    /// `GET /{waba_id}/subscribed_apps` lists).
    pub fn set_subscribed(&self, waba_id: &str, subscribed: bool) {
        self.engine.account.set_subscribed(waba_id, subscribed);
    }

    /// Changes a registered template's status (sends follow it: paused →
    /// 132015, disabled → 132016, pending or rejected → 132001) and, when
    /// it changed, sends a signed `message_template_status_update` webhook
    /// for every WABA.
    pub fn set_template_status(
        &self,
        name: &str,
        language: &str,
        status: TemplateStatus,
    ) -> Result<(), SandboxError> {
        account_routes::set_template_status(&self.engine, name, language, status)
    }

    /// Changes a registered template's category (`MARKETING`, `UTILITY`,
    /// `AUTHENTICATION`; the users' marketing flags follow it) and, when
    /// it changed, sends a signed `template_category_update` webhook for
    /// every WABA.
    pub fn set_template_category(
        &self,
        name: &str,
        language: &str,
        category: &str,
    ) -> Result<(), SandboxError> {
        account_routes::set_template_category(&self.engine, name, language, category)
    }

    /// Forgets accepted records, counters, windows, pair state and queued
    /// webhooks, and refills the buckets; rules, faults and the webhook
    /// target stay.
    pub fn reset(&self) {
        self.engine.reset();
    }
}
