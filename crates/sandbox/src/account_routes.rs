//! The Graph API's management reads, in Meta's shapes, and the `/admin`
//! routes that break what they report:
//!
//! - `GET /{version}/debug_token?input_token=T`: `{"data": {is_valid,
//!   expires_at, scopes, granular_scopes, ...}}`; any bearer token may ask
//!   (Meta wants an app or user token); an unknown or broken token is
//!   `is_valid: false` with an `error` inside `data`.
//! - `GET /{version}/{phone_number_id}[?fields=a,b]`: the phone-number node
//!   (`verified_name`, `code_verification_status`, `display_phone_number`,
//!   `quality_rating`, `platform_type`, `throughput: {level}`, `status`,
//!   `messaging_limit_tier`, `id`), only the fields asked for when `fields`
//!   is given.
//! - `GET /{version}/{waba_id}/phone_numbers`, `.../message_templates[?name=N]`,
//!   `.../subscribed_apps`: `{"data": [...], "paging": {...}}`; `POST` and
//!   `DELETE .../subscribed_apps` subscribe and unsubscribe (`{"success": true}`).
//!   `message_templates` lists each template with its `category`, `status`
//!   and `components` (`HEADER`, `BODY` with `{{n}}` placeholders,
//!   `BUTTONS`), a page at a time as Meta does: `limit` (default 25) and
//!   the `after` cursor; `paging.next` is there while more follow.
//!
//! Reads need a usable token (190 otherwise) with the
//! `whatsapp_business_management` scope (200), and the token must be one of
//! the object's WABA (100 otherwise, as for an object that does not exist).
//!
//! Admin: `POST /admin/token` `{access_token, valid?, expires_at?, scopes?}`
//! (a revoked, expired or de-scoped token also fails sends: 190 / 200);
//! `POST /admin/numbers/{phone_number_id}/health` `{status?, platform_type?,
//! quality_rating?, throughput?, messaging_limit_tier?, waba_id?}`;
//! `POST /admin/subscribed-apps` `{waba_id, subscribed}`;
//! `POST /admin/template-status` `{name, language, status}`;
//! `POST /admin/template-category` `{name, language, category}`. A changed
//! quality rating, throughput level or messaging tier sends a signed
//! `phone_number_quality_update` webhook, a changed template status a
//! `message_template_status_update` one, a changed category a
//! `template_category_update` one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::account::{
    MANAGEMENT_SCOPE, NumberHealth, NumberHealthChange, QualityRating, ThroughputLevel, TokenState,
    unix_now,
};
use crate::admin_routes::{Body, refusal};
use crate::config::{NumberConfig, TemplateConfig, TemplateStatus};
use crate::engine::Engine;
use crate::errors::{MetaError, SandboxError};
use crate::ids::fbtrace_id;

/// The app the sandbox plays.
const APP_ID: &str = "100000000000001";
const APP_NAME: &str = "Gateway Sandbox";

pub(crate) fn routes() -> Router<Arc<Engine>> {
    // The second segment is named as the send route names it: the router
    // needs one name per position.
    Router::new()
        .route("/{version}/debug_token", get(debug_token))
        // The same position names a media id (`media_routes`).
        .route(
            "/{version}/{phone_number_id}",
            get(phone_number).delete(crate::media_routes::delete),
        )
        .route(
            "/{version}/{phone_number_id}/phone_numbers",
            get(phone_numbers),
        )
        .route(
            "/{version}/{phone_number_id}/message_templates",
            get(message_templates),
        )
        .route(
            "/{version}/{phone_number_id}/subscribed_apps",
            get(subscribed_apps)
                .post(subscribe_app)
                .delete(unsubscribe_app),
        )
        .route("/admin/token", post(admin_token))
        .route(
            "/admin/numbers/{phone_number_id}/health",
            post(admin_number_health),
        )
        .route("/admin/subscribed-apps", post(admin_subscribed))
        .route("/admin/template-status", post(admin_template_status))
        .route("/admin/template-category", post(admin_template_category))
}

fn reject(engine: &Engine, error: &MetaError) -> Response {
    error.response(&fbtrace_id(&engine.random))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The WABAs a token was issued for: those of the numbers configured with it.
fn token_wabas(engine: &Engine, token: &str) -> BTreeSet<String> {
    engine
        .number_configs()
        .iter()
        .filter(|n| n.access_token == token)
        .map(|n| n.waba_id.clone())
        .collect()
}

/// The caller's token, if it may read management objects.
fn read_token(engine: &Engine, headers: &HeaderMap) -> Result<String, MetaError> {
    let token = bearer(headers).ok_or_else(MetaError::invalid_token)?;
    let state = engine
        .account
        .token(token)
        .ok_or_else(MetaError::invalid_token)?;
    if !state.usable(unix_now()) {
        return Err(MetaError::expired_token());
    }
    if !state.has_scope(MANAGEMENT_SCOPE) {
        return Err(MetaError::missing_permission(MANAGEMENT_SCOPE));
    }
    Ok(token.to_owned())
}

#[derive(Deserialize)]
struct DebugQuery {
    input_token: Option<String>,
}

async fn debug_token(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    Query(query): Query<DebugQuery>,
) -> Response {
    if bearer(&headers).is_none() {
        return reject(&engine, &MetaError::invalid_token());
    }
    let Some(input) = query.input_token.filter(|t| !t.is_empty()) else {
        return reject(
            &engine,
            &MetaError::invalid_parameter("The parameter input_token is required"),
        );
    };
    let Some(state) = engine.account.token(&input) else {
        return Json(json!({"data": {
            "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
            "is_valid": false,
            "scopes": [],
        }}))
        .into_response();
    };
    let wabas: Vec<String> = token_wabas(&engine, &input).into_iter().collect();
    let now = unix_now();
    let mut data = json!({
        "app_id": APP_ID,
        "type": "SYSTEM_USER",
        "application": APP_NAME,
        "data_access_expires_at": 0,
        "expires_at": state.expires_at,
        "is_valid": state.usable(now),
        "issued_at": now - 86_400,
        "scopes": state.scopes,
        "granular_scopes": state.scopes.iter()
            .map(|scope| json!({"scope": scope, "target_ids": wabas}))
            .collect::<Vec<_>>(),
        "user_id": "100000000000002",
    });
    if !state.valid {
        data["error"] = json!({"code": 190, "message": "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.", "subcode": 460});
    } else if !state.usable(now) {
        data["error"] = json!({"code": 190, "message": format!("Error validating access token: Session has expired at unix time {}.", state.expires_at), "subcode": 463});
    }
    Json(json!({ "data": data })).into_response()
}

#[derive(Deserialize)]
struct FieldsQuery {
    fields: Option<String>,
    /// On a media id: the number that must own it.
    phone_number_id: Option<String>,
}

fn number_node(config: &NumberConfig, health: &NumberHealth) -> Map<String, Value> {
    let throughput = match health.throughput {
        ThroughputLevel::Standard => "STANDARD",
        ThroughputLevel::High => "HIGH",
        ThroughputLevel::NotApplicable => "NOT_APPLICABLE",
    };
    let quality = match health.quality_rating {
        QualityRating::Green => "GREEN",
        QualityRating::Yellow => "YELLOW",
        QualityRating::Red => "RED",
        QualityRating::Unknown => "UNKNOWN",
    };
    let node = json!({
        "verified_name": health.verified_name,
        "code_verification_status": health.code_verification_status,
        "display_phone_number": config.display_phone_number,
        "quality_rating": quality,
        "platform_type": health.platform_type,
        "throughput": {"level": throughput},
        "status": health.status,
        "messaging_limit_tier": health.messaging_limit_tier,
        // The portfolio's limit; Meta's current name for the tier above.
        "whatsapp_business_manager_messaging_limit": health.messaging_limit_tier,
        "id": config.phone_number_id,
    });
    match node {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

async fn phone_number(
    State(engine): State<Arc<Engine>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<FieldsQuery>,
) -> Response {
    if engine.media.contains(&id) {
        return crate::media_routes::info(&engine, &id, query.phone_number_id.as_deref(), &headers);
    }
    let token = match read_token(&engine, &headers) {
        Ok(token) => token,
        Err(error) => return reject(&engine, &error),
    };
    let (Some(config), Some(health)) = (engine.number_config(&id), engine.account.number(&id))
    else {
        return reject(&engine, &MetaError::unknown_read(&id));
    };
    let wabas = token_wabas(&engine, &token);
    if !wabas.contains(&health.waba_id) && !wabas.contains(&config.waba_id) {
        return reject(&engine, &MetaError::unknown_read(&id));
    }
    let mut node = number_node(&config, &health);
    if let Some(fields) = query.fields.filter(|f| !f.trim().is_empty()) {
        let wanted: BTreeSet<&str> = fields.split(',').map(str::trim).collect();
        for field in &wanted {
            if !node.contains_key(*field) {
                return reject(
                    &engine,
                    &MetaError::invalid_parameter(format!(
                        "(#100) Tried accessing nonexisting field ({field}) on node type (WhatsAppBusinessPhoneNumber)"
                    )),
                );
            }
        }
        node.retain(|key, _| key == "id" || wanted.contains(key.as_str()));
    }
    Json(Value::Object(node)).into_response()
}

/// The WABA id of a WABA route, if the caller's token may read it.
fn readable_waba(engine: &Engine, headers: &HeaderMap, waba_id: &str) -> Result<(), MetaError> {
    let token = read_token(engine, headers)?;
    if token_wabas(engine, &token).contains(waba_id) {
        Ok(())
    } else {
        Err(MetaError::unknown_read(waba_id))
    }
}

fn listing(data: Vec<Value>) -> Response {
    let paging = json!({"cursors": {"before": "QVFIUmJl", "after": "QVFIUmFm"}});
    Json(json!({"data": data, "paging": paging})).into_response()
}

async fn phone_numbers(
    State(engine): State<Arc<Engine>>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = readable_waba(&engine, &headers, &waba_id) {
        return reject(&engine, &error);
    }
    let data = engine
        .account
        .numbers_of(&waba_id)
        .into_iter()
        .filter_map(|(id, health)| {
            let config = engine.number_config(&id)?;
            Some(Value::Object(number_node(&config, &health)))
        })
        .collect();
    listing(data)
}

#[derive(Deserialize)]
struct TemplatesQuery {
    name: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// Templates per page when `limit` is not given, as Meta.
const TEMPLATES_PER_PAGE: usize = 25;
/// The most `limit` may ask for.
const TEMPLATES_PAGE_MAX: usize = 1_000;

/// A listing cursor: where the next page starts. Opaque to callers, as
/// Meta's are.
fn cursor(offset: usize) -> String {
    format!("QVFI{offset:08x}")
}

fn cursor_offset(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix("QVFI")?, 16).ok()
}

/// A template's `components` as Meta lists them.
fn components(template: &TemplateConfig) -> Value {
    let placeholders = |n: usize| -> String { (1..=n).map(|i| format!(" {{{{{i}}}}}")).collect() };
    let mut components = Vec::new();
    if let Some(format) = &template.header {
        let format = format.to_ascii_uppercase();
        components.push(if format == "TEXT" {
            json!({"type": "HEADER", "format": "TEXT",
                   "text": format!("Sandbox header{}", placeholders(template.header_parameters))})
        } else {
            json!({"type": "HEADER", "format": format, "example": {"header_handle": ["4::sandbox"]}})
        });
    }
    components.push(json!({"type": "BODY",
        "text": format!("Sandbox template{}", placeholders(template.body_parameters))}));
    if !template.buttons.is_empty() {
        let buttons: Vec<Value> = template
            .buttons
            .iter()
            .map(|button| match button.kind.to_ascii_uppercase().as_str() {
                "URL" => json!({"type": "URL", "text": "Open",
                    "url": format!("https://example.com/{}", placeholders(button.parameters).trim())}),
                "COPY_CODE" => json!({"type": "COPY_CODE", "example": "SANDBOX"}),
                "PHONE_NUMBER" => {
                    json!({"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+15550100000"})
                }
                "OTP" => json!({"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}),
                other => json!({"type": other, "text": "Reply"}),
            })
            .collect();
        components.push(json!({"type": "BUTTONS", "buttons": buttons}));
    }
    Value::Array(components)
}

/// A stable numeric id for a template in a language.
fn template_id(name: &str, language: &str) -> String {
    // FNV-1a: stable across runs, unlike the standard hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes().chain([0]).chain(language.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 9_000_000_000_000_000 + 1_000_000_000_000_000).to_string()
}

async fn message_templates(
    State(engine): State<Arc<Engine>>,
    Path((version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<TemplatesQuery>,
) -> Response {
    if let Err(error) = readable_waba(&engine, &headers, &waba_id) {
        return reject(&engine, &error);
    }
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => TEMPLATES_PER_PAGE,
        Some(Ok(limit)) if (1..=TEMPLATES_PAGE_MAX).contains(&limit) => limit,
        Some(_) => {
            return reject(
                &engine,
                &MetaError::invalid_parameter(format!(
                    "(#100) Param limit must be a number from 1 to {TEMPLATES_PAGE_MAX}"
                )),
            );
        }
    };
    let start = match query.after.as_deref().map(cursor_offset) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => {
            return reject(
                &engine,
                &MetaError::invalid_parameter("(#100) Invalid after cursor"),
            );
        }
    };
    let all = engine.templates.list(query.name.as_deref());
    let end = all.len().min(start.saturating_add(limit));
    let data: Vec<Value> = all
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|(template, status)| {
            json!({
                "name": template.name,
                "language": template.language,
                "status": status.meta_name(),
                "category": engine.templates.category(template),
                "components": components(template),
                "id": template_id(&template.name, &template.language),
            })
        })
        .collect();
    let mut paging = json!({"cursors": {"before": cursor(start), "after": cursor(end)}});
    if end < all.len() {
        paging["next"] = json!(format!(
            "https://graph.facebook.com/{version}/{waba_id}/message_templates?limit={limit}&after={}",
            cursor(end)
        ));
    }
    Json(json!({"data": data, "paging": paging})).into_response()
}

async fn subscribed_apps(
    State(engine): State<Arc<Engine>>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = readable_waba(&engine, &headers, &waba_id) {
        return reject(&engine, &error);
    }
    let data = if engine.account.is_subscribed(&waba_id) {
        vec![json!({"whatsapp_business_api_data": {
            "link": "https://www.example.com/sandbox-app",
            "name": APP_NAME,
            "id": APP_ID,
        }})]
    } else {
        Vec::new()
    };
    Json(json!({ "data": data })).into_response()
}

async fn subscribe_app(
    State(engine): State<Arc<Engine>>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    set_subscription(&engine, &headers, &waba_id, true)
}

async fn unsubscribe_app(
    State(engine): State<Arc<Engine>>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    set_subscription(&engine, &headers, &waba_id, false)
}

fn set_subscription(engine: &Engine, headers: &HeaderMap, waba_id: &str, on: bool) -> Response {
    if let Err(error) = readable_waba(engine, headers, waba_id) {
        return reject(engine, &error);
    }
    engine.account.set_subscribed(waba_id, on);
    Json(json!({"success": true})).into_response()
}

// ---------------------------------------------------------------------------
// Changes, from the Rust API and the admin routes.

fn envelope(waba_id: &str, field: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "time": unix_now(),
            "changes": [{"field": field, "value": value}],
        }],
    })
}

/// Changes a number's health; a changed quality rating, throughput level or
/// messaging tier is reported by a `phone_number_quality_update` webhook.
pub(crate) fn change_number(
    engine: &Engine,
    phone_number_id: &str,
    change: NumberHealthChange,
) -> Result<NumberHealth, SandboxError> {
    let config = engine
        .number_config(phone_number_id)
        .ok_or_else(|| SandboxError::UnknownNumber(phone_number_id.to_owned()))?;
    let (before, after) = engine
        .account
        .change_number(phone_number_id, change)
        .ok_or_else(|| SandboxError::UnknownNumber(phone_number_id.to_owned()))?;
    let rank = |q: QualityRating| match q {
        QualityRating::Green | QualityRating::Unknown => 0,
        QualityRating::Yellow => 1,
        QualityRating::Red => 2,
    };
    let event = if after.throughput != before.throughput {
        Some(if after.throughput == ThroughputLevel::High {
            "THROUGHPUT_UPGRADE"
        } else {
            "THROUGHPUT_DOWNGRADE"
        })
    } else if rank(after.quality_rating) > rank(before.quality_rating) {
        Some("FLAGGED")
    } else if rank(after.quality_rating) < rank(before.quality_rating) {
        Some("UNFLAGGED")
    } else if after.messaging_limit_tier != before.messaging_limit_tier {
        Some("UPGRADE")
    } else {
        None
    };
    if let Some(event) = event {
        let mut value = json!({
            "display_phone_number": config.display_phone_number,
            "event": event,
            "current_limit": after.messaging_limit_tier,
        });
        if after.messaging_limit_tier != before.messaging_limit_tier {
            value["old_limit"] = json!(before.messaging_limit_tier);
        }
        let body = envelope(&after.waba_id, "phone_number_quality_update", value);
        engine.webhooks.account(&body, Instant::now());
    }
    if after.messaging_limit_tier != before.messaging_limit_tier {
        // The portfolio's limit, as a number (-1: unlimited).
        let limit = tier_users(&after.messaging_limit_tier).map_or(json!(null), |u| json!(u));
        let value = json!({ "max_daily_conversations_per_business": limit });
        let body = envelope(&after.waba_id, "business_capability_update", value);
        engine.webhooks.account(&body, Instant::now());
    }
    Ok(after)
}

/// A messaging limit tier as the number of users Meta puts in
/// `business_capability_update` (-1: unlimited).
fn tier_users(tier: &str) -> Option<i64> {
    match tier {
        "TIER_50" => Some(50),
        "TIER_250" => Some(250),
        "TIER_1K" => Some(1_000),
        "TIER_2K" => Some(2_000),
        "TIER_10K" => Some(10_000),
        "TIER_100K" => Some(100_000),
        "TIER_UNLIMITED" => Some(-1),
        _ => None,
    }
}

/// Changes a template's status; a change is reported to every WABA by a
/// `message_template_status_update` webhook.
pub(crate) fn set_template_status(
    engine: &Engine,
    name: &str,
    language: &str,
    status: TemplateStatus,
) -> Result<(), SandboxError> {
    let before = engine
        .templates
        .set_status(name, language, status)
        .ok_or_else(|| SandboxError::UnknownTemplate {
            name: name.to_owned(),
            language: language.to_owned(),
        })?;
    if before == status {
        return Ok(());
    }
    let wabas: BTreeSet<String> = engine
        .number_configs()
        .iter()
        .map(|n| n.waba_id.clone())
        .collect();
    let reason = match status {
        TemplateStatus::Rejected => "INCORRECT_CATEGORY",
        _ => "NONE",
    };
    for waba in wabas {
        let mut value = json!({
            "event": status.meta_name(),
            "message_template_id": template_id(name, language).parse::<u64>().unwrap_or(0),
            "message_template_name": name,
            "message_template_language": language,
            "reason": reason,
        });
        if status == TemplateStatus::Paused {
            value["other_info"] = json!({
                "title": "FIRST_PAUSE",
                "description": "This template was paused because of low quality.",
            });
        }
        let body = envelope(&waba, "message_template_status_update", value);
        engine.webhooks.account(&body, Instant::now());
    }
    Ok(())
}

/// Changes a template's category; a change is reported to every WABA by a
/// `template_category_update` webhook (Meta's shape for a change made:
/// `previous_category` and `new_category`).
pub(crate) fn set_template_category(
    engine: &Engine,
    name: &str,
    language: &str,
    category: &str,
) -> Result<(), SandboxError> {
    let category = category.to_ascii_uppercase();
    let before = engine
        .templates
        .set_category(name, language, &category)
        .ok_or_else(|| SandboxError::UnknownTemplate {
            name: name.to_owned(),
            language: language.to_owned(),
        })?;
    if before.eq_ignore_ascii_case(&category) {
        return Ok(());
    }
    let wabas: BTreeSet<String> = engine
        .number_configs()
        .iter()
        .map(|n| n.waba_id.clone())
        .collect();
    for waba in wabas {
        let value = json!({
            "message_template_id": template_id(name, language).parse::<u64>().unwrap_or(0),
            "message_template_name": name,
            "message_template_language": language,
            "previous_category": before,
            "new_category": category,
        });
        let body = envelope(&waba, "template_category_update", value);
        engine.webhooks.account(&body, Instant::now());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetToken {
    access_token: String,
    #[serde(default = "yes")]
    valid: bool,
    #[serde(default)]
    expires_at: i64,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

async fn admin_token(State(engine): State<Arc<Engine>>, Body(request): Body<SetToken>) -> Response {
    let state = TokenState {
        valid: request.valid,
        expires_at: request.expires_at,
        scopes: request
            .scopes
            .unwrap_or_else(|| TokenState::default().scopes),
    };
    if engine
        .account
        .set_token(&request.access_token, state.clone())
    {
        Json(state).into_response()
    } else {
        refusal(&SandboxError::UnknownToken)
    }
}

async fn admin_number_health(
    State(engine): State<Arc<Engine>>,
    Path(phone_number_id): Path<String>,
    Body(change): Body<NumberHealthChange>,
) -> Response {
    match change_number(&engine, &phone_number_id, change) {
        Ok(health) => Json(health).into_response(),
        Err(refused) => refusal(&refused),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscription {
    waba_id: String,
    subscribed: bool,
}

async fn admin_subscribed(
    State(engine): State<Arc<Engine>>,
    Body(request): Body<Subscription>,
) -> Response {
    engine
        .account
        .set_subscribed(&request.waba_id, request.subscribed);
    Json(json!({"waba_id": request.waba_id, "subscribed": request.subscribed})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateStatusChange {
    name: String,
    language: String,
    status: TemplateStatus,
}

async fn admin_template_status(
    State(engine): State<Arc<Engine>>,
    Body(request): Body<TemplateStatusChange>,
) -> Response {
    match set_template_status(&engine, &request.name, &request.language, request.status) {
        Ok(()) => Json(json!({"name": request.name, "language": request.language,
            "status": request.status.meta_name()}))
        .into_response(),
        Err(refused) => refusal(&refused),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateCategoryChange {
    name: String,
    language: String,
    category: String,
}

async fn admin_template_category(
    State(engine): State<Arc<Engine>>,
    Body(request): Body<TemplateCategoryChange>,
) -> Response {
    match set_template_category(&engine, &request.name, &request.language, &request.category) {
        Ok(()) => Json(json!({"name": request.name, "language": request.language,
            "category": request.category.to_ascii_uppercase()}))
        .into_response(),
        Err(refused) => refusal(&refused),
    }
}
