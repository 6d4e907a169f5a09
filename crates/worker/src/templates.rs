//! The WABAs' template registries, kept by the workers (keys and format:
//! gateway_queue's `templates` module; the rules:
//! `gateway_domain::templates`), and the fallback templates judged by them.
//!
//! - **Sync.** Every worker looks every [`TICK`]: for each WABA of the
//!   configured senders, the one that takes `gw:{waba:<id>}:templates:sync`
//!   (held [`SYNC_EVERY`]) reads Meta's whole listing (every page, with
//!   components) with one of the WABA's senders' tokens and replaces the
//!   registry. So a registry is read as soon as the first worker starts,
//!   then every five minutes, by one worker per WABA. A sync that fails is
//!   tried again at the next interval; meanwhile the registry stays as it
//!   was (never synced: `/send` refuses nothing).
//! - **Webhooks.** `message_template_status_update` sets an entry's status,
//!   `template_category_update` its category (whichever worker reads the
//!   event); a template the registry does not hold yet (newly created)
//!   makes that worker sync the WABA at once, to learn its components.
//! - **Meta's answers.** A template (a message's or a fallback) that Meta
//!   answers with 132015 (paused) or 132016 (disabled) takes that status in
//!   the registry; 132001 (no such template in that language) removes it.
//!   The worker marks it unusable in its [`SenderHealth`] first, so that the
//!   messages after it fail `no_usable_fallback` without a call, however
//!   long the backlog; other workers see it in the registry within
//!   `TEMPLATE_REFRESH`.
//! - **Fallbacks.** A fallback template is usable unless this worker marked
//!   it so, or the registry refuses it by the rule `/send` applies (unknown,
//!   not APPROVED, wrong language or parameters). A sender's configured
//!   fallback that is not is warned about at each sync (it is configuration:
//!   `gateway doctor` says the same).
//! - **Metric.** `gateway_fallback_template_unusable{sender, template,
//!   language}`: each configured fallback, and each fallback Meta refused,
//!   1 while unusable; every worker sets it from the registry at every tick
//!   and at once when it learns of a change (aggregate with `max`).
//!
//! [`SenderHealth`]: crate::sender_health::SenderHealth

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_config::SenderSettings;
use gateway_domain::OutboundMessage;
use gateway_domain::templates::{self, TemplateCategory, TemplateEntry};
use gateway_domain::webhook::{TemplateCategoryUpdate, TemplateStatusUpdate};
use gateway_queue::TemplateChange;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::{Worker, unix_ms};

/// How often a WABA's registry is read from Meta in full.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(300);
/// How often a worker looks for a WABA to sync and sets its gauges.
const TICK: Duration = Duration::from_secs(30);

/// The reason a message fails with when its window is closed and every
/// fallback it could go as is unusable.
pub(crate) const NO_USABLE_FALLBACK: &str = "no_usable_fallback";

/// Syncs the registries and keeps the gauges until `stop`.
pub(crate) async fn run(worker: Arc<Worker>, stop: CancellationToken) {
    // Counted from 0, so that an alert's increase() sees the first.
    for waba in wabas(&worker) {
        for outcome in ["ok", "error"] {
            worker
                .metrics
                .template_syncs
                .with_label_values(&[waba.as_str(), outcome]);
        }
    }
    loop {
        for waba in wabas(&worker) {
            if stop.is_cancelled() {
                return;
            }
            match worker
                .queue
                .take_template_sync(&waba, &worker.consumer, SYNC_EVERY)
                .await
            {
                Ok(true) => sync(&worker, &waba).await,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, waba, "cannot take the template sync");
                    worker.metrics.redis_failed("template_sync");
                }
            }
        }
        set_gauges(&worker).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// The WABAs of the configured senders.
fn wabas(worker: &Worker) -> Vec<String> {
    let mut wabas: Vec<String> = worker
        .settings
        .senders
        .iter()
        .map(|s| s.waba_id.clone())
        .collect();
    wabas.sort();
    wabas.dedup();
    wabas
}

/// The tokens that may read the WABA: its senders'.
fn tokens_for<'a>(worker: &'a Worker, waba: &str) -> Vec<&'a SecretString> {
    let mut tokens: Vec<&SecretString> = Vec::new();
    let senders = worker.settings.senders.iter().filter(|s| s.waba_id == waba);
    for token in senders.filter_map(|s| s.access_token.as_ref()) {
        if !tokens
            .iter()
            .any(|t| t.expose_secret() == token.expose_secret())
        {
            tokens.push(token);
        }
    }
    tokens
}

/// Reads the WABA's templates from Meta and replaces its registry.
pub(crate) async fn sync(worker: &Worker, waba: &str) {
    let tokens = tokens_for(worker, waba);
    if tokens.is_empty() {
        return;
    }
    let count = |outcome: &str| {
        worker
            .metrics
            .template_syncs
            .with_label_values(&[waba, outcome])
            .inc();
    };
    // With each of the WABA's senders' tokens in turn, until one reads it.
    let mut listed = None;
    for token in tokens {
        match worker.graph.message_templates(waba, None, token).await {
            Ok(templates) => {
                listed = Some(templates);
                break;
            }
            Err(error) => {
                tracing::warn!(waba, %error, "cannot read the WABA's templates");
            }
        }
    }
    let Some(listed) = listed else {
        tracing::warn!(
            waba,
            "the template registry stays as it was until the next sync"
        );
        count("error");
        return;
    };
    let entries: Vec<(String, String, TemplateEntry)> = listed
        .into_iter()
        .map(|t| {
            let entry =
                TemplateEntry::from_meta(t.category.as_deref(), &t.status, t.components.as_ref());
            (t.name, t.language, entry)
        })
        .collect();
    if let Err(error) = worker
        .queue
        .replace_templates(waba, &entries, unix_ms())
        .await
    {
        tracing::warn!(waba, %error, "cannot store the WABA's templates");
        worker.metrics.redis_failed("templates");
        count("error");
        return;
    }
    worker.templates.forget(waba);
    count("ok");
    tracing::info!(waba, templates = entries.len(), "template registry synced");
    for sender in worker.settings.senders.iter().filter(|s| s.waba_id == waba) {
        if let Some(template) = &sender.fallback_template
            && let Err(code) = usable(worker, sender, &template_value(template)).await
        {
            tracing::warn!(
                sender = %sender.name,
                template = %template_name(template),
                code,
                "the sender's configured fallback_template cannot be sent (Meta would answer {code}); \
                 closed windows fail no_usable_fallback until it is fixed"
            );
        }
    }
}

/// `message_template_status_update`: the entry's new status.
pub(crate) async fn status_update(worker: &Worker, update: &TemplateStatusUpdate) {
    let Some(status) = templates::status_after_event(&update.event) else {
        tracing::warn!(
            template = %update.name,
            language = %update.language,
            event = %update.event,
            "Meta flagged a template for its quality; it may be paused soon"
        );
        return;
    };
    let unusable = templates::status_code(&status);
    let change = TemplateChange::Status(status.clone());
    for waba in wabas_named(worker, update.waba_id.as_deref()) {
        if worker
            .sender_health
            .mark(&waba, &update.name, &update.language, unusable)
        {
            log_change(&waba, &update.name, &update.language, &status, unusable);
        }
        change_entry(worker, &waba, &update.name, &update.language, &change).await;
    }
    set_gauges(worker).await;
}

/// `template_category_update`: the entry's new category.
pub(crate) async fn category_update(worker: &Worker, update: &TemplateCategoryUpdate) {
    let Some(category) = TemplateCategory::parse(&update.category) else {
        tracing::info!(category = %update.category, template = %update.name, "a template category the gateway does not know");
        return;
    };
    tracing::info!(
        template = %update.name,
        language = %update.language,
        previous = update.previous.as_deref().unwrap_or(""),
        category = category.as_str(),
        "Meta recategorised a template"
    );
    let change = TemplateChange::Category(category);
    for waba in wabas_named(worker, update.waba_id.as_deref()) {
        change_entry(worker, &waba, &update.name, &update.language, &change).await;
    }
}

/// The configured WABAs a webhook speaks for: the one it names, if ours,
/// or every one when it names none.
fn wabas_named(worker: &Worker, waba: Option<&str>) -> Vec<String> {
    wabas(worker)
        .into_iter()
        .filter(|w| waba.is_none_or(|named| named == w))
        .collect()
}

/// Changes one entry of the WABA's registry; one it does not hold yet
/// (a new template) makes this worker sync the WABA.
async fn change_entry(
    worker: &Worker,
    waba: &str,
    name: &str,
    language: &str,
    change: &TemplateChange,
) {
    match worker
        .queue
        .change_template(waba, name, language, change)
        .await
    {
        Ok(true) => worker.templates.forget(waba),
        Ok(false) if *change != TemplateChange::Gone => sync(worker, waba).await,
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(waba, %error, "cannot update the template registry");
            worker.metrics.redis_failed("templates");
        }
    }
}

/// Meta answered a send of a template (`template`, the object sent) with
/// `code`: a 132001, 132015 or 132016 makes it unusable at once, in this
/// worker and in the registry. `fallback`: it went as a message's fallback.
pub(crate) async fn refused_by_meta(
    worker: &Worker,
    sender: &SenderSettings,
    template: &Value,
    code: i64,
    fallback: bool,
) {
    let change = match code {
        templates::TEMPLATE_MISSING => TemplateChange::Gone,
        code => match templates::status_after(code) {
            Some(status) => TemplateChange::Status(status.to_owned()),
            None => return,
        },
    };
    let Some((name, language)) = name_and_language(template) else {
        return;
    };
    let waba = &sender.waba_id;
    worker
        .sender_health
        .mark(waba, &name, &language, Some(code));
    if fallback {
        worker
            .sender_health
            .track_refused(&sender.name, &name, &language);
        worker
            .metrics
            .fallback_template_unusable
            .with_label_values(&[sender.name.as_str(), name.as_str(), language.as_str()])
            .set(1);
        tracing::warn!(
            sender = %sender.name,
            template = %name,
            language = %language,
            code,
            "Meta refused a fallback template; it is no longer sent, and messages to closed windows fail no_usable_fallback"
        );
    }
    change_entry(worker, waba, &name, &language, &change).await;
}

/// Whether a template object may be sent as a fallback by the sender:
/// `Err` with the code Meta would answer when not.
pub(crate) async fn usable(
    worker: &Worker,
    sender: &SenderSettings,
    template: &Value,
) -> Result<(), i64> {
    let waba = &sender.waba_id;
    if let Some((name, language)) = name_and_language(template)
        && let Some(code) = worker.sender_health.unusable(waba, &name, &language)
    {
        return Err(code);
    }
    let registry = match worker.templates.get(waba).await {
        Ok(registry) => registry,
        Err(error) => {
            // Unknown: Meta has the last word, as before the registry.
            tracing::debug!(%error, "cannot read the template registry");
            worker.metrics.redis_failed("templates");
            return Ok(());
        }
    };
    templates::check(&registry, template)
        .map(|_| ())
        .map_err(|refusal| refusal.meta_code())
}

/// Sets `gateway_fallback_template_unusable` for every configured fallback
/// and every fallback Meta refused.
pub(crate) async fn set_gauges(worker: &Worker) {
    // (sender, template, language) → the template object, and whether it
    // is the sender's configured one (else a message's own, known only by
    // name and language: its parameters are that message's business).
    let mut watched: BTreeMap<(String, String, String), (Value, &SenderSettings, bool)> =
        BTreeMap::new();
    for sender in &worker.settings.senders {
        if let Some(template) = &sender.fallback_template {
            let value = template_value(template);
            if let Some((name, language)) = name_and_language(&value) {
                watched.insert((sender.name.clone(), name, language), (value, sender, true));
            }
        }
    }
    for (sender_name, name, language) in worker.sender_health.refused() {
        if let Some(sender) = worker
            .settings
            .senders
            .iter()
            .find(|s| s.name == sender_name)
        {
            let value = serde_json::json!({"name": name, "language": {"code": language}});
            watched
                .entry((sender_name, name, language))
                .or_insert((value, sender, false));
        }
    }
    for ((sender_name, name, language), (value, sender, configured)) in &watched {
        let labels = [sender_name.as_str(), name.as_str(), language.as_str()];
        let unusable = match usable(worker, sender, value).await {
            Err(templates::TEMPLATE_PARAMETERS) => *configured,
            other => other.is_err(),
        };
        if !unusable && !configured {
            // A message's own fallback usable again: its series goes.
            worker
                .sender_health
                .untrack_refused(sender_name, name, language);
            let _ = worker
                .metrics
                .fallback_template_unusable
                .remove_label_values(&labels);
            continue;
        }
        worker
            .metrics
            .fallback_template_unusable
            .with_label_values(&labels)
            .set(i64::from(unusable));
    }
}

/// A template message's object as the Graph API body carries it.
/// The registry's category of `template` (a template object); `None` when
/// the registry does not know it (or cannot be read now).
pub(crate) async fn category(
    worker: &Worker,
    sender: &SenderSettings,
    template: &Value,
) -> Option<gateway_domain::templates::TemplateCategory> {
    let (name, language) = name_and_language(template)?;
    let registry = worker.templates.get(&sender.waba_id).await.ok()?;
    registry.get(&name, &language)?.category
}

pub(crate) fn template_value(template: &OutboundMessage) -> Value {
    let mut fields = Map::new();
    template.write_graph_fields(&mut fields);
    fields.remove("template").unwrap_or(Value::Null)
}

/// The `template` object of a Graph API body the gateway rendered.
pub(crate) fn template_of_body(body: &str) -> Value {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|mut body| body.get_mut("template").map(Value::take))
        .unwrap_or(Value::Null)
}

fn name_and_language(template: &Value) -> Option<(String, String)> {
    let name = template.get("name")?.as_str()?;
    let language = template.get("language")?.get("code")?.as_str()?;
    Some((name.to_owned(), language.to_owned()))
}

fn template_name(template: &OutboundMessage) -> String {
    name_and_language(&template_value(template))
        .map(|(name, language)| format!("{name} ({language})"))
        .unwrap_or_default()
}

fn log_change(waba: &str, name: &str, language: &str, status: &str, unusable: Option<i64>) {
    if unusable.is_none() {
        tracing::info!(
            waba,
            template = name,
            language,
            status,
            "template usable again"
        );
    } else {
        tracing::warn!(
            waba,
            template = name,
            language,
            status,
            "template not approved; it is no longer sent as a fallback"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_read_from_what_is_sent() {
        let body = r#"{"messaging_product":"whatsapp","to":"+1","type":"template",
            "template":{"name":"hello_world","language":{"code":"en_US"}}}"#;
        let template = template_of_body(body);
        assert_eq!(
            name_and_language(&template),
            Some(("hello_world".into(), "en_US".into()))
        );
        assert_eq!(template_of_body("{not json"), Value::Null);
        assert_eq!(name_and_language(&Value::Null), None);
        let configured = OutboundMessage::template(
            &serde_json::json!({"name": "order_update", "language": {"code": "pt_BR"}}),
        )
        .expect("template");
        assert_eq!(template_name(&configured), "order_update (pt_BR)");
    }
}
