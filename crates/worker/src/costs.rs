//! Cost visibility: what Meta says the messages cost, from the `pricing`
//! (and, before webhook v24, `conversation`) of their status webhooks,
//! counted per sender and pricing category (the rules are in
//! `gateway_domain::rules::pricing`):
//!
//! - `gateway_billable_messages_total{sender,category}`: a message whose
//!   pricing says billable, once, at its first `delivered` or `read`
//!   status (Meta bills on delivery), marked on its record in Redis;
//! - `gateway_conversations_total{sender,category}`: a conversation, once
//!   per id Meta gives it, marked in Redis per sender.
//!
//! The marks make each count exact whichever worker processes a status
//! and however often Meta repeats it; a status processed again after a
//! failure finds its mark and counts nothing more. Only the gateway's own
//! messages are counted (a status must match a record), under categories
//! from a fixed set (`other` for anything else).

use gateway_config::SenderSettings;
use gateway_domain::rules::pricing::{self, COMMON_CATEGORIES};
use gateway_domain::webhook::StatusUpdate;
use gateway_queue::{QueueError, StatusView};

use crate::{Worker, unix_ms};

/// Counts what this status tells of the message's cost (`view` is its
/// record, for this same send).
pub(crate) async fn count(
    worker: &Worker,
    sender: &SenderSettings,
    view: &StatusView,
    update: &StatusUpdate,
) -> Result<(), QueueError> {
    let pnid = sender.phone_number_id.as_str();
    let name = sender.name.as_str();
    let pricing = update.pricing.as_ref();
    if let Some(category) = pricing::billed_category(update.status, pricing)
        && worker
            .queue
            .mark_billed(pnid, &view.message_id, &update.wamid, unix_ms())
            .await?
    {
        worker
            .metrics
            .billable_messages
            .with_label_values(&[name, category])
            .inc();
    }
    if let Some((id, category)) =
        pricing::conversation_category(update.conversation.as_ref(), pricing)
        && worker.queue.mark_conversation(pnid, id, unix_ms()).await?
    {
        worker
            .metrics
            .conversations
            .with_label_values(&[name, category])
            .inc();
    }
    Ok(())
}

/// The common categories' counters exist from the start, at 0, so that a
/// panel's or an alert's `increase()` sees the first message.
pub(crate) fn register(worker_metrics: &gateway_telemetry::Metrics, sender: &str) {
    for category in COMMON_CATEGORIES {
        worker_metrics
            .billable_messages
            .with_label_values(&[sender, category]);
        worker_metrics
            .conversations
            .with_label_values(&[sender, category]);
    }
}
