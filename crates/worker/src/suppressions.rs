//! Suppressions in the worker: recorded from Meta's failures (131050,
//! 131049, 131026, in the answer or in a status webhook) and from users'
//! keywords, cleared when a user writes again (a 131050 opt-out only) or
//! says an opt-in keyword, and checked just before a send: a suppressed
//! message fails with reason `suppressed` and Meta's code, without a call.
//!
//! The check costs a Redis read only for senders that have suppressions:
//! [`SuppressionWatch`] knows which do, kept current without polling (each
//! sender's suppression key is armed with the key watcher, and any change
//! to one wakes it to look again).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gateway_config::SenderSettings;
use gateway_domain::rules::suppression::{self, KeywordAction, Scope};
use gateway_domain::webhook::InboundMessage;
use gateway_queue::{QueueError, Suppression, keys};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Worker;
use crate::sender_state::HeldMessage;

/// After a failed look (Redis away), the watch tries again this soon; until
/// then every sender counts as having suppressions, so none is missed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which senders have suppressions (by phone_number_id).
#[derive(Debug, Default)]
pub(crate) struct SuppressionWatch {
    present: RwLock<Option<HashSet<String>>>,
}

impl SuppressionWatch {
    /// Whether the sender may have suppressions: true unless the watch
    /// knows it has none.
    pub fn may_have(&self, phone_number_id: &str) -> bool {
        match &*self.present.read().unwrap_or_else(|e| e.into_inner()) {
            Some(present) => present.contains(phone_number_id),
            None => true,
        }
    }

    fn set(&self, present: Option<HashSet<String>>) {
        *self.present.write().unwrap_or_else(|e| e.into_inner()) = present;
    }
}

/// Keeps [`Worker::suppression_watch`] current until `shutdown`.
pub(crate) async fn watch(worker: Arc<Worker>, shutdown: CancellationToken) {
    let senders: Vec<String> = worker
        .settings
        .senders
        .iter()
        .map(|s| s.phone_number_id.clone())
        .collect();
    let keys: Vec<String> = senders.iter().map(|pnid| keys::suppressed(pnid)).collect();
    let changed = Arc::new(Notify::new());
    loop {
        let wait = match worker.watcher.exist_and_arm(&keys, &changed).await {
            Ok(exist) => {
                let present = senders
                    .iter()
                    .zip(exist)
                    .filter(|(_, exists)| *exists)
                    .map(|(pnid, _)| pnid.clone())
                    .collect();
                worker.suppression_watch.set(Some(present));
                None
            }
            Err(_) => {
                worker.metrics.redis_failed("suppression_watch");
                worker.suppression_watch.set(None);
                Some(RETRY_AFTER)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changed.notified(), if wait.is_none() => {}
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}

/// The suppression that holds `message` back, if any. `marketing`: it goes
/// as a marketing template.
pub(crate) async fn holding_back(
    worker: &Worker,
    sender: &SenderSettings,
    message: &HeldMessage,
    marketing: bool,
    now_ms: i64,
) -> Result<Option<Suppression>, QueueError> {
    if !worker.suppression_watch.may_have(&sender.phone_number_id) {
        return Ok(None);
    }
    worker
        .queue
        .suppression_for(
            &sender.phone_number_id,
            message.delivery.recipient.key(),
            marketing,
            now_ms,
        )
        .await
}

/// Meta failed a message to `recipient` with `code`: suppress them if the
/// code calls for it.
pub(crate) async fn record_failure(
    worker: &Worker,
    sender: &SenderSettings,
    recipient: &str,
    code: i64,
    now_ms: i64,
) -> Result<(), QueueError> {
    let pause = worker.settings.suppressions.not_on_whatsapp_for;
    let Some((scope, lasts)) = suppression::for_failure(code, pause) else {
        return Ok(());
    };
    let until_ms =
        lasts.map(|d| now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    tracing::info!(sender = %sender.name, code, scope = scope.as_str(), "recipient suppressed");
    worker
        .queue
        .suppress(
            &sender.phone_number_id,
            &Suppression::new(recipient, scope, code, "meta", now_ms, until_ms),
        )
        .await
}

/// A user wrote: an opt-out keyword opts them out of marketing, an opt-in
/// keyword back in; any message ends Meta's 131050 opt-out (the user
/// engaged again). Meta's 131049 cap stands either way.
pub(crate) async fn on_inbound(
    worker: &Worker,
    sender: &SenderSettings,
    message: &InboundMessage,
    now_ms: i64,
) -> Result<(), QueueError> {
    let settings = &worker.settings.suppressions;
    let text = message
        .raw
        .get("text")
        .and_then(|t| t.get("body"))
        .and_then(|b| b.as_str())
        .or_else(|| {
            // A quick-reply button's text.
            message
                .raw
                .get("button")
                .and_then(|b| b.get("text"))
                .and_then(|t| t.as_str())
        });
    let action = text.and_then(|t| {
        suppression::keyword_action(t, &settings.opt_out_keywords, &settings.opt_in_keywords)
    });
    let pnid = &sender.phone_number_id;
    for recipient in message.recipient_keys() {
        match action {
            Some(KeywordAction::OptOut) => {
                tracing::info!(sender = %sender.name, "a user opted out of marketing by keyword");
                worker
                    .queue
                    .suppress(
                        pnid,
                        &Suppression::new(
                            recipient,
                            Scope::Marketing,
                            suppression::OPTED_OUT,
                            "keyword",
                            now_ms,
                            None,
                        ),
                    )
                    .await?;
            }
            Some(KeywordAction::OptIn) => {
                worker
                    .queue
                    .clear_suppression(pnid, recipient, Some(Scope::Marketing), |s| {
                        s.code == suppression::OPTED_OUT
                    })
                    .await?;
            }
            None if worker.suppression_watch.may_have(pnid) => {
                worker
                    .queue
                    .clear_suppression(pnid, recipient, Some(Scope::Marketing), |s| {
                        s.code == suppression::OPTED_OUT && s.source == "meta"
                    })
                    .await?;
            }
            None => {}
        }
    }
    Ok(())
}
