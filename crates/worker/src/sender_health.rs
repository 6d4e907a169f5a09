//! Sender health as Meta reports it, watched while the worker runs.
//!
//! - A poll (first a few seconds after start, then every
//!   [`POLL_EVERY`]) reads, for each sender this worker holds the lease
//!   of, its number's quality rating and throughput level
//!   (`GET /{phone_number_id}?fields=...`). Templates, the fallbacks'
//!   among them, are the template registry's business (see `templates`).
//! - The quality rating is acted on by the sender's owner: while it is RED
//!   the sender's bulk lane is held (`worker.hold_bulk_on_red_quality`).
//!   Its dispatcher watches [`SenderHealth::quality`] (as it watches the
//!   tier), which this worker's poll and the webhooks it handles set, and
//!   which the dispatcher itself feeds from Redis: whichever worker reads a
//!   rating from Meta stores it in `gw:{pnid}:quality` (no key for GREEN),
//!   and the owner reads that key with its lease and pause flag, at once
//!   when it takes the sender and again whenever it changes (key
//!   tracking). So a webhook handled by another worker, or a rating known
//!   before a handover, acts within moments. The owner writes the key only
//!   when the rating differs from what it last read there: a poll that
//!   finds nothing new costs no Redis call.
//! - Metrics: `gateway_sender_quality_rating{sender}` is 0 unknown (not
//!   polled yet, or Meta says `UNKNOWN`), 1 green, 2 yellow, 3 red, and
//!   `gateway_sender_bulk_held{sender}` 1 while bulk is held, both exported
//!   by the sender's owner only (removed on handover);
//!   `gateway_sender_throughput_limit{sender}` is the messages per second
//!   Meta allows at the number's throughput level (80 `STANDARD`, 1000
//!   `HIGH`; 0 unknown). Set by the worker that looked last: aggregate with
//!   `max by (sender)`.
//! - Webhooks (handled by whichever worker reads the event):
//!   `message_template_status_update` and `template_category_update`
//!   change the WABA's template registry (see `templates`), and the first
//!   marks a template in one language unusable here at once when it stops
//!   being `APPROVED` (as does Meta answering a send of it with 132001,
//!   132015 or 132016), and usable again when it is approved again; a
//!   fallback template that is unusable is not sent (a message whose every
//!   fallback is unusable fails `no_usable_fallback`, see
//!   `attempt::body_to_send`). Such a mark lasts [`MARK_LASTS`]: by then the
//!   registry, which other workers read, says the same (or, if writing it
//!   failed, one more send finds out again). `phone_number_quality_update` names the
//!   number by its display number only, so the WABA's senders are read
//!   again at once, and their ratings stored for their owners.
//! - The throughput level caps the sender's rate: the dispatcher watches
//!   [`SenderHealth::tier`] and holds the sender to
//!   `rules::adaptive_rate::tier_capped` (its `rate_per_second`, but never
//!   more than the tier allows less the share kept for inbound messages).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::webhook::{AccountUpdate, QualityUpdate};
use gateway_graph::{GraphError, PhoneNumberInfo, throughput_limit};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Worker;

/// How often owned senders are polled.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(300);
/// The first poll, once the worker has had time to take its leases.
const FIRST_POLL_AFTER: Duration = Duration::from_secs(3);

/// (WABA or sender, template name, language code).
type TemplateKey = (String, String, String);

/// How long this worker's own mark of a template as unusable holds
/// before the registry alone decides.
pub(crate) const MARK_LASTS: Duration = Duration::from_secs(60);

/// What the worker knows about its senders' health between polls.
#[derive(Debug, Default)]
pub(crate) struct SenderHealth {
    /// (WABA, template name, language code) not usable now: the code Meta
    /// answers (or would) and when it was marked.
    unusable: RwLock<HashMap<TemplateKey, (i64, Instant)>>,
    /// (sender, template, language) of messages' own fallbacks Meta
    /// refused, watched by `gateway_fallback_template_unusable` until
    /// usable again.
    refused: Mutex<HashSet<TemplateKey>>,
    /// The last throughput limit seen per sender (by name), each on a
    /// channel its dispatcher watches: a dispatcher looks at its tier when
    /// it changes, not on a timer, and only its own change wakes it.
    throughput: Mutex<HashMap<String, watch::Sender<Option<u32>>>>,
    /// The last quality rating known per sender (by name; 0 unknown, 1
    /// green, 2 yellow, 3 red), each on a channel its dispatcher watches.
    quality: Mutex<HashMap<String, watch::Sender<i64>>>,
    /// What the owner's dispatcher last read of its sender's rating in
    /// Redis (`None`: no key); no entry until it has read it since it took
    /// the sender.
    stored: Mutex<HashMap<String, Option<String>>>,
}

impl SenderHealth {
    /// The code Meta answers the WABA's template with, if this worker
    /// marked it unusable within [`MARK_LASTS`].
    pub(crate) fn unusable(&self, waba: &str, name: &str, language: &str) -> Option<i64> {
        self.unusable_at(waba, name, language, Instant::now())
    }

    fn unusable_at(&self, waba: &str, name: &str, language: &str, now: Instant) -> Option<i64> {
        let unusable = self.unusable.read().unwrap_or_else(|e| e.into_inner());
        if unusable.is_empty() {
            return None;
        }
        let key = (waba.to_owned(), name.to_owned(), language.to_owned());
        let (code, at) = unusable.get(&key)?;
        (now.saturating_duration_since(*at) < MARK_LASTS).then_some(*code)
    }

    /// Records that a template is unusable (with the code Meta answers) or
    /// usable (`None`); true when that changed.
    pub(crate) fn mark(&self, waba: &str, name: &str, language: &str, code: Option<i64>) -> bool {
        let now = Instant::now();
        let before = self.unusable_at(waba, name, language, now);
        let mut unusable = self.unusable.write().unwrap_or_else(|e| e.into_inner());
        let key = (waba.to_owned(), name.to_owned(), language.to_owned());
        unusable.retain(|_, (_, at)| now.saturating_duration_since(*at) < MARK_LASTS);
        match code {
            None => {
                unusable.remove(&key);
            }
            Some(code) => {
                unusable.insert(key, (code, now));
            }
        }
        before.is_some() != code.is_some()
    }

    /// Watches a message's own fallback that Meta refused.
    pub(crate) fn track_refused(&self, sender: &str, name: &str, language: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.insert((sender.to_owned(), name.to_owned(), language.to_owned()));
    }

    pub(crate) fn untrack_refused(&self, sender: &str, name: &str, language: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.remove(&(sender.to_owned(), name.to_owned(), language.to_owned()));
    }

    /// The refused fallbacks watched: (sender, template, language).
    pub(crate) fn refused(&self) -> Vec<(String, String, String)> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.iter().cloned().collect()
    }

    /// The messages per second Meta allows the sender's number (`None`
    /// until polled), as a channel whose `changed` resolves when it does.
    pub(crate) fn tier(&self, sender: &str) -> watch::Receiver<Option<u32>> {
        let mut last = self.throughput.lock().unwrap_or_else(|e| e.into_inner());
        last.entry(sender.to_owned())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// The sender's quality rating as this worker knows it (0 unknown,
    /// 1 green, 2 yellow, 3 red), as a channel whose `changed` resolves
    /// when it does.
    pub(crate) fn quality(&self, sender: &str) -> watch::Receiver<i64> {
        let mut known = self.quality.lock().unwrap_or_else(|e| e.into_inner());
        known
            .entry(sender.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    fn set_quality(&self, sender: &str, quality: i64) {
        let mut known = self.quality.lock().unwrap_or_else(|e| e.into_inner());
        let channel = known
            .entry(sender.to_owned())
            .or_insert_with(|| watch::Sender::new(0));
        channel.send_if_modified(|seen| std::mem::replace(seen, quality) != quality);
    }

    /// What the sender's owner read of its rating in Redis (`None`: no
    /// key). A rating stored there is the one to act on; a key gone after
    /// a YELLOW or RED one means GREEN (a key never written says nothing).
    pub(crate) fn read_stored(&self, sender: &str, stored: Option<String>) {
        let quality = match stored.as_deref() {
            Some(rating) => Some(quality_value(Some(rating))),
            None if *self.quality(sender).borrow() >= 2 => Some(1),
            None => None,
        };
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sender.to_owned(), stored);
        if let Some(quality) = quality {
            self.set_quality(sender, quality);
        }
    }

    /// The sender's owner let it go: what it read in Redis is no longer kept
    /// up to date.
    pub(crate) fn forget_stored(&self, sender: &str) {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sender);
    }

    fn stored(&self, sender: &str) -> Option<Option<String>> {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sender)
            .cloned()
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
            record_number(worker, sender, &number).await;
            crate::messaging_limit::record_reported_limit(worker, sender, &number).await;
        }
        Err(error) => warn_poll(sender, "phone number", &error),
    }
}

fn warn_poll(sender: &SenderSettings, what: &str, error: &GraphError) {
    tracing::warn!(sender = %sender.name, %error, "sender health poll: cannot read the {what}");
}

async fn record_number(worker: &Worker, sender: &SenderSettings, number: &PhoneNumberInfo) {
    let name = sender.name.as_str();
    let quality = quality_value(number.quality_rating.as_deref());
    record_quality(worker, sender, quality).await;
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

/// Makes the rating known to this worker and stored in Redis for the
/// sender's owner (see the module's doc). The owner compares with what it
/// last read there; another worker (a webhook it handled) reads it first.
async fn record_quality(worker: &Worker, sender: &SenderSettings, quality: i64) {
    let name = sender.name.as_str();
    let wanted = stored_form(quality);
    let known = if owns(worker, sender) {
        worker.sender_health.stored(name)
    } else {
        None
    };
    let current = match known {
        Some(current) => Ok(current),
        None => worker.queue.quality(&sender.phone_number_id).await,
    };
    let stored = match current {
        Ok(current) if current.as_deref() == wanted => Ok(()),
        Ok(_) => {
            let result = worker
                .queue
                .set_quality(&sender.phone_number_id, wanted)
                .await;
            if result.is_ok() {
                tracing::info!(
                    sender = name,
                    rating = quality_name(quality),
                    "the number's quality rating changed"
                );
            }
            result
        }
        Err(error) => Err(error),
    };
    if let Err(error) = stored {
        tracing::warn!(sender = name, %error, "cannot store the number's quality rating");
        worker.metrics.redis_failed("quality");
    }
    worker.sender_health.set_quality(name, quality);
}

/// How a rating is stored: no key for GREEN, the name otherwise.
fn stored_form(quality: i64) -> Option<&'static str> {
    (quality != 1).then(|| quality_name(quality))
}

/// The rating as stored: `UNKNOWN`, `GREEN`, `YELLOW` or `RED` (what
/// [`quality_value`] reads back).
pub(crate) fn quality_name(quality: i64) -> &'static str {
    match quality {
        1 => "GREEN",
        2 => "YELLOW",
        3 => "RED",
        _ => "UNKNOWN",
    }
}

/// Acts on `message_template_status_update`, `template_category_update`
/// (the template registry's, see `templates`), `phone_number_quality_update`
/// and `business_capability_update`.
pub(crate) async fn handle(worker: &Worker, updates: Vec<AccountUpdate>) {
    for update in updates {
        match update {
            AccountUpdate::TemplateStatus(update) => {
                crate::templates::status_update(worker, &update).await;
            }
            AccountUpdate::TemplateCategory(update) => {
                crate::templates::category_update(worker, &update).await;
            }
            AccountUpdate::Quality(update) => quality(worker, &update).await,
            AccountUpdate::Capability(update) => {
                crate::messaging_limit::capability_update(worker, &update).await;
            }
        }
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
            Ok(number) => record_number(worker, sender, &number).await,
            Err(error) => warn_poll(sender, "phone number", &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_ratings_map_to_documented_values() {
        assert_eq!(quality_value(None), 0);
        assert_eq!(quality_value(Some("UNKNOWN")), 0);
        assert_eq!(quality_value(Some("GREEN")), 1);
        assert_eq!(quality_value(Some("YELLOW")), 2);
        assert_eq!(quality_value(Some("RED")), 3);
        assert_eq!(quality_value(Some("red")), 3);
        for quality in 0..=3 {
            assert_eq!(quality_value(Some(quality_name(quality))), quality);
        }
        assert_eq!(quality_name(7), "UNKNOWN");
    }

    #[test]
    fn a_template_is_unusable_until_approved_again_or_the_mark_lapses() {
        let health = SenderHealth::default();
        assert_eq!(health.unusable("2000", "hello_world", "en_US"), None);
        assert!(health.mark("2000", "hello_world", "en_US", Some(132_015)));
        assert_eq!(
            health.unusable("2000", "hello_world", "en_US"),
            Some(132_015)
        );
        assert_eq!(health.unusable("2000", "hello_world", "pt_BR"), None);
        assert_eq!(health.unusable("3000", "hello_world", "en_US"), None);
        assert!(
            !health.mark("2000", "hello_world", "en_US", Some(132_016)),
            "still unusable"
        );
        assert!(health.mark("2000", "hello_world", "en_US", None));
        assert_eq!(health.unusable("2000", "hello_world", "en_US"), None);

        // After MARK_LASTS the registry alone decides.
        health.mark("2000", "promo", "en_US", Some(132_015));
        let later = Instant::now() + MARK_LASTS;
        assert_eq!(health.unusable_at("2000", "promo", "en_US", later), None);
    }

    #[test]
    fn refused_fallbacks_are_watched_until_untracked() {
        let health = SenderHealth::default();
        health.track_refused("s0", "promo", "en_US");
        health.track_refused("s0", "promo", "en_US");
        assert_eq!(
            health.refused(),
            [("s0".to_owned(), "promo".to_owned(), "en_US".to_owned())]
        );
        health.untrack_refused("s0", "promo", "en_US");
        assert!(health.refused().is_empty());
    }

    #[test]
    fn the_rating_follows_what_the_owner_reads_in_redis() {
        let health = SenderHealth::default();
        let quality = health.quality("s");
        assert_eq!(*quality.borrow(), 0, "unknown at first");
        health.read_stored("s", None);
        assert_eq!(*quality.borrow(), 0, "no key says nothing yet");
        assert_eq!(health.stored("s"), Some(None));
        health.read_stored("s", Some("RED".into()));
        assert_eq!(*quality.borrow(), 3);
        health.read_stored("s", None);
        assert_eq!(*quality.borrow(), 1, "a RED key gone: GREEN again");
        health.set_quality("s", 2);
        health.read_stored("s", Some("YELLOW".into()));
        assert_eq!(*quality.borrow(), 2);
        health.forget_stored("s");
        assert_eq!(health.stored("s"), None);
        assert_eq!(stored_form(1), None, "GREEN is no key");
        assert_eq!(stored_form(3), Some("RED"));
        assert_eq!(stored_form(0), Some("UNKNOWN"));
    }

    #[test]
    fn a_throughput_change_is_noticed_once() {
        let health = SenderHealth::default();
        assert_eq!(health.throughput_changed("s", 80), None);
        assert_eq!(health.throughput_changed("s", 80), None);
        assert_eq!(health.throughput_changed("s", 1000), Some(80));
    }
}
