//! `/send`'s template check: a `template` message and a `fallback_template`
//! are checked against the template registry of the sender's WABA
//! (`gw:{waba:<id>}:templates`, kept by the workers from Meta's listing)
//! before anything is stored. Unknown, not APPROVED, in a language the
//! template does not have, or with the wrong number of parameters for a
//! component: `422` naming the field (`template.name`,
//! `template.language.code`, `template.components[0].parameters`,
//! `fallback_template.name`, ...) with the codes `template_unknown`,
//! `template_not_approved`, `template_language`, `template_parameters`
//! (the rule is `gateway_domain::templates::check`). The template's
//! category goes with the message (stream field `tc`, `ftc` for the
//! fallback's).
//!
//! A WABA whose registry was never synced (no worker has read Meta yet)
//! refuses nothing: the message is queued, as before there was a registry,
//! and Meta has the last word. The registry is read through the process's
//! [`TemplateCache`](gateway_queue::TemplateCache): from memory, looked at
//! again in Redis at most every two seconds per WABA; a message that is
//! neither a template nor has a fallback template costs nothing.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_domain::templates::{self, TemplateCategory, WabaTemplates};
use gateway_domain::{MessageKind, OutboundMessage};
use serde_json::{Map, Value};

use crate::send_request::SendRequest;
use crate::{ApiError, AppState};

/// Whether the request names a template the registry must know.
fn names_a_template(request: &SendRequest) -> bool {
    request.message.kind() == MessageKind::Template || request.fallback.is_some()
}

/// The registries the requests need, one read per WABA.
pub(crate) async fn registries(
    state: &AppState,
    requests: &[&SendRequest],
) -> Result<HashMap<String, Arc<WabaTemplates>>, ApiError> {
    let mut registries = HashMap::new();
    for request in requests.iter().filter(|r| names_a_template(r)) {
        let waba = &request.sender.waba_id;
        if !registries.contains_key(waba) {
            let registry = state.templates.get(waba).await.inspect_err(|error| {
                tracing::warn!(%error, waba, "cannot read the template registry");
                state.metrics.redis_failed("templates");
            })?;
            registries.insert(waba.clone(), registry);
        }
    }
    Ok(registries)
}

/// Checks the request's templates against its WABA's registry and records
/// their categories on it; the `422` when one would be refused.
pub(crate) fn check(
    state: &AppState,
    registries: &HashMap<String, Arc<WabaTemplates>>,
    request: &mut SendRequest,
) -> Result<(), ApiError> {
    let Some(registry) = registries.get(&request.sender.waba_id) else {
        return Ok(());
    };
    let sender = request.sender.clone();
    let refused = |refusal: templates::TemplateRefusal, prefix: &str| {
        state
            .metrics
            .template_refusals
            .with_label_values(&[sender.name.as_str(), refusal.code()])
            .inc();
        ApiError::Invalid(refusal.field_error(prefix))
    };
    if request.message.kind() == MessageKind::Template {
        request.template_category =
            category(registry, &request.message).map_err(|r| refused(r, "template"))?;
    }
    if let Some(fallback) = &request.fallback {
        request.fallback_category =
            category(registry, fallback).map_err(|r| refused(r, "fallback_template"))?;
    }
    Ok(())
}

/// The category of the template a message names, if the registry knows it.
fn category(
    registry: &WabaTemplates,
    message: &OutboundMessage,
) -> Result<Option<TemplateCategory>, templates::TemplateRefusal> {
    let mut fields = Map::new();
    message.write_graph_fields(&mut fields);
    let template = fields.get("template").unwrap_or(&Value::Null);
    Ok(templates::check(registry, template)?.and_then(|entry| entry.category))
}
