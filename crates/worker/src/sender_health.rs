//! Sender health as Meta reports it, watched while the worker runs.
//!
//! - A poll (first a few seconds after start, then every
//!   [`POLL_EVERY`]) reads, for each sender this worker holds the lease
//!   of, its number's quality rating and throughput level
//!   (`GET /{phone_number_id}?fields=...`) and the status of its configured
//!   fallback template (`GET /{waba_id}/message_templates?name=...`).
//! - Metrics: `gateway_sender_quality_rating{sender}` is 0 unknown (not
//!   polled yet, or Meta says `UNKNOWN`), 1 green, 2 yellow, 3 red;
//!   `gateway_sender_throughput_limit{sender}` is the messages per second
//!   Meta allows at the number's throughput level (80 `STANDARD`, 1000
//!   `HIGH`; 0 unknown). Set by the worker that looked last: aggregate with
//!   `max by (sender)`.
//! - Webhooks (handled by whichever worker reads the event):
//!   `message_template_status_update` marks a template in one language
//!   unusable when it stops being `APPROVED`, and usable again when it is
//!   approved again; a sender's configured fallback template that is
//!   unusable is not sent (a message without a fallback of its own then
//!   fails `window_closed`, see `attempt::body_to_send`). Other workers
//!   learn it at their next poll. `phone_number_quality_update` names the
//!   number by its display number only, so the WABA's senders are read
//!   again at once.
//! - The throughput level caps the sender's rate: the dispatcher watches
//!   [`SenderHealth::tier`] and holds the sender to
//!   `rules::adaptive_rate::tier_capped` (its `rate_per_second`, but never
//!   more than the tier allows less the share kept for inbound messages).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gateway_config::SenderSettings;
use gateway_domain::OutboundMessage;
use gateway_domain::webhook::{AccountUpdate, QualityUpdate, TemplateStatusUpdate};
use gateway_graph::{GraphError, PhoneNumberInfo, throughput_limit};
use secrecy::SecretString;
use serde_json::Map;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Worker;

/// How often owned senders are polled.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(300);
/// The first poll, once the worker has had time to take its leases.
const FIRST_POLL_AFTER: Duration = Duration::from_secs(3);

/// What the worker knows about its senders' health between polls.
#[derive(Debug, Default)]
pub(crate) struct SenderHealth {
    /// (template name, language code) not usable now.
    unusable: RwLock<HashSet<(String, String)>>,
    /// The last throughput limit seen per sender (by name), each on a
    /// channel its dispatcher watches: a dispatcher looks at its tier when
    /// it changes, not on a timer, and only its own change wakes it.
    throughput: Mutex<HashMap<String, watch::Sender<Option<u32>>>>,
}

impl SenderHealth {
    /// Whether this template object names a template known to be unusable.
    pub(crate) fn is_unusable(&self, template: &OutboundMessage) -> bool {
        let unusable = self.unusable.read().unwrap_or_else(|e| e.into_inner());
        if unusable.is_empty() {
            return false;
        }
        template_key(template).is_some_and(|key| unusable.contains(&key))
    }

    /// Records whether a template may be used; true when that changed.
    fn mark(&self, name: &str, language: &str, usable: bool) -> bool {
        let mut unusable = self.unusable.write().unwrap_or_else(|e| e.into_inner());
        let key = (name.to_owned(), language.to_owned());
        if usable {
            unusable.remove(&key)
        } else {
            unusable.insert(key)
        }
    }

    /// The messages per second Meta allows the sender's number (`None`
    /// until polled), as a channel whose `changed` resolves when it does.
    pub(crate) fn tier(&self, sender: &str) -> watch::Receiver<Option<u32>> {
        let mut last = self.throughput.lock().unwrap_or_else(|e| e.into_inner());
        last.entry(sender.to_owned())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// Records a sender's throughput limit; the previous one if it changed.
    fn throughput_changed(&self, sender: &str, limit: i64) -> Option<i64> {
        let mut last = self.throughput.lock().unwrap_or_else(|e| e.into_inner());
        let channel = last
            .entry(sender.to_owned())
            .or_insert_with(|| watch::Sender::new(None));
        let tier = u32::try_from(limit).ok().filter(|l| *l > 0);
        let mut before = None;
        channel.send_if_modified(|seen| {
            before = *seen;
            let changed = *seen != tier;
            *seen = tier;
            changed
        });
        before.map(i64::from).filter(|before| *before != limit)
    }
}

/// The name and language code a template message names.
pub(crate) fn template_key(template: &OutboundMessage) -> Option<(String, String)> {
    let mut fields = Map::new();
    template.write_graph_fields(&mut fields);
    let template = fields.get("template")?;
    let name = template.get("name")?.as_str()?;
    let language = template.get("language")?.get("code")?.as_str()?;
    Some((name.to_owned(), language.to_owned()))
}

/// 0 unknown, 1 green, 2 yellow, 3 red.
pub(crate) fn quality_value(rating: Option<&str>) -> i64 {
    match rating.map(str::to_ascii_uppercase).as_deref() {
        Some("GREEN") => 1,
        Some("YELLOW") => 2,
        Some("RED") => 3,
        _ => 0,
    }
}

/// Polls the owned senders until `stop`.
pub(crate) async fn run(worker: Arc<Worker>, stop: CancellationToken) {
    let mut wait = FIRST_POLL_AFTER;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = POLL_EVERY;
        for sender in &worker.settings.senders {
            if stop.is_cancelled() {
                return;
            }
            if owns(&worker, sender) {
                poll(&worker, sender).await;
            }
        }
    }
}

/// Whether this worker holds the sender's lease now (its own record of
/// it: asking Redis for every sender would cost a call each).
fn owns(worker: &Worker, sender: &SenderSettings) -> bool {
    crate::depth::owned_gauges(worker).owns(&sender.phone_number_id)
}

/// Reads one sender's number and fallback template.
async fn poll(worker: &Worker, sender: &SenderSettings) {
    let Some(token) = &sender.access_token else {
        return;
    };
    match worker
        .graph
        .phone_number(&sender.phone_number_id, token)
        .await
    {
        Ok(number) => {
            record_number(worker, sender, &number);
            crate::messaging_limit::record_reported_limit(worker, sender, &number).await;
        }
        Err(error) => warn_poll(sender, "phone number", &error),
    }
    if let Some((name, language)) = sender.fallback_template.as_ref().and_then(template_key) {
        poll_template(worker, sender, token, &name, &language).await;
    }
}

async fn poll_template(
    worker: &Worker,
    sender: &SenderSettings,
    token: &SecretString,
    name: &str,
    language: &str,
) {
    match worker
        .graph
        .message_templates(&sender.waba_id, Some(name), token)
        .await
    {
        Ok(templates) => {
            let status = templates
                .iter()
                .find(|t| t.name == name && t.language == language)
                .map_or("MISSING", |t| t.status.as_str());
            let usable = status == "APPROVED";
            if worker.sender_health.mark(name, language, usable) {
                log_template(&sender.name, name, language, status, usable);
            }
        }
        Err(error) => warn_poll(sender, "fallback template", &error),
    }
}

fn warn_poll(sender: &SenderSettings, what: &str, error: &GraphError) {
    tracing::warn!(sender = %sender.name, %error, "sender health poll: cannot read the {what}");
}

fn log_template(sender: &str, name: &str, language: &str, status: &str, usable: bool) {
    if usable {
        tracing::info!(
            sender,
            template = name,
            language,
            status,
            "fallback template usable again"
        );
    } else {
        tracing::warn!(
            sender,
            template = name,
            language,
            status,
            "fallback template not approved; it is no longer sent as a fallback"
        );
    }
}

fn record_number(worker: &Worker, sender: &SenderSettings, number: &PhoneNumberInfo) {
    let name = sender.name.as_str();
    let quality = quality_value(number.quality_rating.as_deref());
    worker
        .metrics
        .sender_quality_rating
        .with_label_values(&[name])
        .set(quality);
    let limit = number
        .throughput_level()
        .and_then(throughput_limit)
        .map_or(0, i64::from);
    worker
        .metrics
        .sender_throughput_limit
        .with_label_values(&[name])
        .set(limit);
    if let Some(before) = worker.sender_health.throughput_changed(name, limit) {
        tracing::warn!(
            sender = name,
            before,
            limit,
            level = number.throughput_level().unwrap_or("unknown"),
            configured_rate = sender.rate_per_second,
            "the number's throughput level changed; the sender's rate follows it"
        );
    }
    if quality == 3 {
        tracing::warn!(sender = name, "Meta rates the sender's quality RED");
    }
}

/// Acts on `message_template_status_update` and `phone_number_quality_update`.
pub(crate) async fn handle(worker: &Worker, updates: Vec<AccountUpdate>) {
    for update in updates {
        match update {
            AccountUpdate::TemplateStatus(update) => template_status(worker, &update),
            AccountUpdate::Quality(update) => quality(worker, &update).await,
            AccountUpdate::Capability(update) => {
                crate::messaging_limit::capability_update(worker, &update).await;
            }
        }
    }
}

fn template_status(worker: &Worker, update: &TemplateStatusUpdate) {
    let ours: Vec<&str> = worker
        .settings
        .senders
        .iter()
        .filter(|s| update.waba_id.as_deref().is_none_or(|w| w == s.waba_id))
        .map(|s| s.name.as_str())
        .collect();
    if ours.is_empty() {
        return;
    }
    let usable = update.is_usable();
    if worker
        .sender_health
        .mark(&update.name, &update.language, usable)
    {
        log_template(
            &ours.join(","),
            &update.name,
            &update.language,
            &update.event,
            usable,
        );
    }
}

async fn quality(worker: &Worker, update: &QualityUpdate) {
    tracing::info!(
        waba = update.waba_id.as_deref().unwrap_or(""),
        number = update.display_phone_number.as_deref().unwrap_or(""),
        event = %update.event,
        current_limit = update.current_limit.as_deref().unwrap_or(""),
        "Meta reported a phone number quality update"
    );
    let senders = worker
        .settings
        .senders
        .iter()
        .filter(|s| update.waba_id.as_deref().is_none_or(|w| w == s.waba_id));
    for sender in senders {
        let Some(token) = &sender.access_token else {
            continue;
        };
        match worker
            .graph
            .phone_number(&sender.phone_number_id, token)
            .await
        {
            Ok(number) => record_number(worker, sender, &number),
            Err(error) => warn_poll(sender, "phone number", &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str, language: &str) -> OutboundMessage {
        let value = serde_json::json!({"name": name, "language": {"code": language}});
        OutboundMessage::template(&value).expect("template")
    }

    #[test]
    fn quality_ratings_map_to_documented_values() {
        assert_eq!(quality_value(None), 0);
        assert_eq!(quality_value(Some("UNKNOWN")), 0);
        assert_eq!(quality_value(Some("GREEN")), 1);
        assert_eq!(quality_value(Some("YELLOW")), 2);
        assert_eq!(quality_value(Some("RED")), 3);
    }

    #[test]
    fn a_template_is_unusable_until_approved_again() {
        let health = SenderHealth::default();
        let hello = template("hello_world", "en_US");
        assert_eq!(
            template_key(&hello),
            Some(("hello_world".into(), "en_US".into()))
        );
        assert!(!health.is_unusable(&hello));
        assert!(health.mark("hello_world", "en_US", false));
        assert!(health.is_unusable(&hello));
        assert!(!health.is_unusable(&template("hello_world", "pt_BR")));
        assert!(!health.mark("hello_world", "en_US", false), "no change");
        assert!(health.mark("hello_world", "en_US", true));
        assert!(!health.is_unusable(&hello));
    }

    #[test]
    fn a_throughput_change_is_noticed_once() {
        let health = SenderHealth::default();
        assert_eq!(health.throughput_changed("s", 80), None);
        assert_eq!(health.throughput_changed("s", 80), None);
        assert_eq!(health.throughput_changed("s", 1000), Some(80));
    }
}
