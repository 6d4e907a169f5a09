//! The business portfolio's messaging limit, checked just before a send:
//! a template to a user whose window is not open starts a business-initiated
//! conversation, and Meta caps the unique users a portfolio does that with
//! in a moving 24 h (its messaging limit, shared by all of its numbers).
//! Meta documents no error for passing it, so the gateway keeps count
//! itself (`gateway_queue`'s portfolio module, in Redis, across numbers and
//! workers) and holds a conversation that would pass the configured share
//! of the limit: the message is recorded `held` and waits, parked like a
//! retry, until the moving window frees room. Replies inside an open window,
//! free-form messages and senders outside any portfolio never wait here.

use gateway_config::{PortfolioSettings, SenderSettings};
use gateway_domain::MessageKind;
use gateway_domain::rules::messaging_limit::MessagingLimit;
use gateway_domain::rules::window;
use gateway_domain::webhook::CapabilityUpdate;
use gateway_graph::PhoneNumberInfo;
use gateway_queue::{ConversationRoom, QueueError};

use crate::Worker;
use crate::sender_state::HeldMessage;

/// The record's reason for a message held here.
pub(crate) const HELD_REASON: &str = "messaging_limit";

/// Whether `message` may go now; `Some(frees_at_ms)` when it must be held
/// until then.
pub(crate) async fn hold_until(
    worker: &Worker,
    sender: &SenderSettings,
    message: &HeldMessage,
    now_ms: i64,
) -> Result<Option<i64>, QueueError> {
    let Some(portfolio) = worker.settings.portfolio_of(sender) else {
        return Ok(None);
    };
    let recipient = message.delivery.recipient.key();
    let as_template = message.delivery.kind == MessageKind::Template;
    if !as_template && !message.progress.fallback_used {
        // Free-form: it goes only inside an open window.
        return Ok(None);
    }
    if !message.progress.fallback_used {
        // A template of its own: a reply if the user's window is open.
        let opened = worker
            .queue
            .window_opened_at(&sender.phone_number_id, recipient)
            .await?;
        if window::allows_free_form(opened, now_ms, 0) {
            return Ok(None);
        }
    }
    let verdict = worker
        .queue
        .portfolio_room(
            &portfolio.id,
            recipient,
            now_ms,
            // Counted here before the call, at Meta on arrival: a count
            // leaves only once Meta's window has surely moved past it too.
            portfolio.window + worker.settings.worker.longest_call,
            portfolio.limit_override,
            portfolio.hold_at,
        )
        .await?;
    let labels = [portfolio.id.as_str()];
    let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    worker
        .metrics
        .portfolio_users
        .with_label_values(&labels)
        .set(gauge(verdict.room.users()));
    worker
        .metrics
        .portfolio_limit
        .with_label_values(&labels)
        .set(gauge(verdict.limit.unwrap_or(0)));
    Ok(match verdict.room {
        ConversationRoom::Held { frees_at_ms, .. } => {
            worker
                .metrics
                .held
                .with_label_values(&[sender.name.as_str(), HELD_REASON])
                .inc();
            // Never in the past: a clock step must not spin the message.
            Some(frees_at_ms.max(now_ms + 1))
        }
        ConversationRoom::Counted { .. } | ConversationRoom::Known { .. } => None,
    })
}

/// The limit Meta reports on a sender's number, kept for its portfolio
/// (unless the configuration overrides it).
pub(crate) async fn record_reported_limit(
    worker: &Worker,
    sender: &SenderSettings,
    number: &PhoneNumberInfo,
) {
    let Some(portfolio) = worker.settings.portfolio_of(sender) else {
        return;
    };
    if let Some(limit) = number.messaging_limit().and_then(MessagingLimit::parse) {
        keep_limit(worker, portfolio, limit).await;
    }
}

/// `business_capability_update`: the portfolio of the WABA it names has a
/// new limit.
pub(crate) async fn capability_update(worker: &Worker, update: &CapabilityUpdate) {
    let Some(waba) = &update.waba_id else {
        return;
    };
    let portfolio = worker
        .settings
        .portfolios
        .iter()
        .find(|p| p.wabas.contains(waba));
    if let Some(portfolio) = portfolio {
        keep_limit(worker, portfolio, update.limit).await;
    }
}

async fn keep_limit(worker: &Worker, portfolio: &PortfolioSettings, limit: MessagingLimit) {
    if portfolio.limit_override.is_some() {
        return;
    }
    if let Err(error) = worker
        .queue
        .set_portfolio_limit(&portfolio.id, limit.users())
        .await
    {
        worker.metrics.redis_failed("portfolio_limit");
        tracing::warn!(%error, portfolio = %portfolio.id, "could not keep the portfolio's messaging limit");
    }
}
