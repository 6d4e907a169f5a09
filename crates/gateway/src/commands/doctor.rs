//! `gateway doctor [SENDER] [--json] [--api-url URL]`: the sender debug
//! checklist, run against the Graph API the configuration names. Per
//! sender: the token is valid, does not expire within 7 days and has both
//! WhatsApp scopes; the number is registered and connected, with its
//! quality rating (RED fails); the number belongs to the configured WABA;
//! the fallback template exists and is APPROVED in its language; the WABA
//! has the app subscribed. Once: the api's `/webhook` answers Meta's
//! verification handshake with the configured verify token. Each line
//! says pass or fail and, on fail, the fix in one sentence; the command
//! exits 1 when anything fails.

use std::time::Duration;

use gateway_config::{Role, SenderSettings, Settings};
use gateway_graph::{GraphClient, GraphError, MANAGEMENT_SCOPE, MESSAGING_SCOPE};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{AlreadyReported, load_settings, sender, unix_ms};

/// A token expiring sooner than this fails.
const EXPIRY_MARGIN_SECONDS: i64 = 7 * 86_400;
const TIMEOUT: Duration = Duration::from_secs(10);

struct Check {
    sender: Option<String>,
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn pass(sender: Option<&str>, name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            sender: sender.map(str::to_owned),
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(
        sender: Option<&str>,
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            sender: sender.map(str::to_owned),
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn json(&self) -> Value {
        json!({
            "sender": self.sender,
            "check": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        })
    }
}

pub async fn run(
    config: &str,
    only: Option<&str>,
    api_url: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let senders: Vec<&SenderSettings> = match only {
        Some(name) => vec![sender(&settings, name)?.as_ref()],
        None => settings.senders.iter().map(AsRef::as_ref).collect(),
    };
    let graph = GraphClient::new(
        &settings.graph.base_url,
        &settings.graph.version,
        settings.graph.timeout.min(TIMEOUT),
        4,
    )?;
    let mut checks = Vec::new();
    for sender in senders {
        checks.extend(check_sender(&graph, &settings, sender).await);
    }
    let api_url = api_url.map_or_else(
        || format!("http://127.0.0.1:{}", settings.api.listen.port()),
        |url| url.trim_end_matches('/').to_owned(),
    );
    checks.push(check_webhook(&settings, &api_url).await);

    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        let all: Vec<Value> = checks.iter().map(Check::json).collect();
        println!(
            "{}",
            json!({"ok": failed == 0, "failed": failed, "checks": all})
        );
    } else {
        for check in &checks {
            let who = check.sender.as_deref().unwrap_or("-");
            let verdict = if check.ok { "pass" } else { "FAIL" };
            println!("{verdict}  {who:<12} {:<16} {}", check.name, check.detail);
            if let Some(fix) = &check.fix {
                println!("      fix: {fix}");
            }
        }
        if failed == 0 {
            println!("all {} checks passed", checks.len());
        } else {
            println!("{failed} of {} checks failed", checks.len());
        }
    }
    if failed > 0 {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// A Graph error in one line, without anything secret.
fn why(error: &GraphError) -> String {
    match error {
        GraphError::Meta { code, message, .. } => format!("Meta error {code}: {message}"),
        other => other.to_string(),
    }
}

async fn check_sender(
    graph: &GraphClient,
    settings: &Settings,
    sender: &SenderSettings,
) -> Vec<Check> {
    let name = Some(sender.name.as_str());
    let env = &sender.access_token_env;
    let Some(token) = &sender.access_token else {
        return vec![Check::fail(
            name,
            "token",
            format!("{env} is not set"),
            format!("Set {env} to the sender's system-user access token."),
        )];
    };
    let mut checks = Vec::new();

    // The token.
    let new_token = format!(
        "Generate a new system-user token with {MANAGEMENT_SCOPE} and {MESSAGING_SCOPE} in Business Settings and set it in {env}."
    );
    match graph.debug_token(token, token).await {
        Ok(info) if info.is_valid => {
            checks.push(Check::pass(name, "token", "valid"));
            let now = unix_ms() / 1000;
            match info.expires() {
                None => checks.push(Check::pass(name, "token_expiry", "never expires")),
                Some(at) if at - now > EXPIRY_MARGIN_SECONDS => checks.push(Check::pass(
                    name,
                    "token_expiry",
                    format!("expires in {} days", (at - now) / 86_400),
                )),
                Some(at) => checks.push(Check::fail(
                    name,
                    "token_expiry",
                    format!("expires in {}", super::human_duration((at - now) * 1000)),
                    format!(
                        "Replace the token in {env} with a system-user token that does not expire."
                    ),
                )),
            }
            let missing: Vec<&str> = [MANAGEMENT_SCOPE, MESSAGING_SCOPE]
                .into_iter()
                .filter(|scope| !info.has_scope(scope))
                .collect();
            if missing.is_empty() {
                checks.push(Check::pass(name, "token_scopes", "both WhatsApp scopes"));
            } else {
                checks.push(Check::fail(
                    name,
                    "token_scopes",
                    format!("missing {}", missing.join(", ")),
                    format!(
                        "Grant {} to the system user's token in Business Settings and set the new token in {env}.",
                        missing.join(" and ")
                    ),
                ));
            }
        }
        Ok(info) => {
            let reason = info
                .error
                .map_or_else(|| "not valid".to_owned(), |e| e.message);
            checks.push(Check::fail(name, "token", reason, new_token));
        }
        Err(error) => checks.push(Check::fail(name, "token", why(&error), new_token)),
    }

    // The number.
    let pnid = &sender.phone_number_id;
    match graph.phone_number(pnid, token).await {
        Ok(number) => {
            let status = number.status.as_deref().unwrap_or("UNKNOWN");
            let platform = number.platform_type.as_deref().unwrap_or("CLOUD_API");
            if status == "CONNECTED" && platform == "CLOUD_API" {
                checks.push(Check::pass(
                    name,
                    "number",
                    format!("{pnid} registered, {status}"),
                ));
            } else {
                checks.push(Check::fail(
                    name,
                    "number",
                    format!("{pnid} is {status} (platform {platform})"),
                    format!("Register the number for the Cloud API (POST /{pnid}/register) and resolve its status in WhatsApp Manager."),
                ));
            }
            let quality = number.quality_rating.as_deref().unwrap_or("UNKNOWN");
            let level = number.throughput_level().unwrap_or("unknown");
            let detail = format!("{quality}, throughput {level}");
            if quality == "RED" {
                checks.push(Check::fail(
                    name,
                    "quality",
                    detail,
                    "Quality is RED: pause bulk traffic and review recent templates and opt-ins in WhatsApp Manager before sending more.",
                ));
            } else {
                checks.push(Check::pass(name, "quality", detail));
            }
        }
        Err(error) => {
            checks.push(Check::fail(
                name,
                "number",
                why(&error),
                format!("Check phone_number_id {pnid} and that the token may read it."),
            ));
        }
    }

    // The number belongs to the configured WABA.
    let waba = &sender.waba_id;
    match graph.waba_phone_numbers(waba, token).await {
        Ok(numbers) if numbers.iter().any(|n| &n.id == pnid) => {
            checks.push(Check::pass(
                name,
                "waba",
                format!("{pnid} belongs to {waba}"),
            ));
        }
        Ok(_) => checks.push(Check::fail(
            name,
            "waba",
            format!("WABA {waba} does not own {pnid}"),
            format!(
                "Set waba_id of sender {} to the WABA that owns {pnid}.",
                sender.name
            ),
        )),
        Err(error) => checks.push(Check::fail(
            name,
            "waba",
            why(&error),
            format!("Check waba_id {waba} and that the token was granted it."),
        )),
    }

    // The fallback template.
    if let Some(template) = &sender.fallback_template {
        let mut fields = serde_json::Map::new();
        template.write_graph_fields(&mut fields);
        let wanted = fields.get("template").and_then(|t| {
            Some((
                t.get("name")?.as_str()?.to_owned(),
                t.get("language")?.get("code")?.as_str()?.to_owned(),
            ))
        });
        if let Some((tname, language)) = wanted {
            match graph.message_templates(waba, Some(&tname), token).await {
                Ok(templates) => {
                    match templates
                        .iter()
                        .find(|t| t.name == tname && t.language == language)
                    {
                        Some(t) if t.status == "APPROVED" => checks.push(Check::pass(
                            name,
                            "fallback_template",
                            format!("{tname} ({language}) APPROVED"),
                        )),
                        Some(t) => checks.push(Check::fail(
                            name,
                            "fallback_template",
                            format!("{tname} ({language}) is {}", t.status),
                            format!("Get {tname} ({language}) approved again in WhatsApp Manager, or set another approved fallback_template."),
                        )),
                        None => checks.push(Check::fail(
                            name,
                            "fallback_template",
                            format!("{tname} ({language}) does not exist in WABA {waba}"),
                            format!("Create {tname} in {language} in WABA {waba}, or set fallback_template to an approved one."),
                        )),
                    }
                }
                Err(error) => checks.push(Check::fail(
                    name,
                    "fallback_template",
                    why(&error),
                    "Let the token read the WABA's templates (whatsapp_business_management).",
                )),
            }
        }
    } else {
        checks.push(Check::pass(name, "fallback_template", "none configured"));
    }

    // The app's subscription to the WABA's webhooks.
    let version = &settings.graph.version;
    match graph.subscribed_apps(waba, token).await {
        Ok(apps) if !apps.is_empty() => {
            let names: Vec<&str> = apps.iter().filter_map(|a| a.name.as_deref()).collect();
            checks.push(Check::pass(
                name,
                "subscribed_app",
                format!("subscribed: {}", names.join(", ")),
            ));
        }
        Ok(_) => checks.push(Check::fail(
            name,
            "subscribed_app",
            format!("no app is subscribed to WABA {waba}"),
            format!(
                "Subscribe the app: POST /{version}/{waba}/subscribed_apps with the sender's token."
            ),
        )),
        Err(error) => checks.push(Check::fail(
            name,
            "subscribed_app",
            why(&error),
            "Let the token read the WABA (whatsapp_business_management).",
        )),
    }
    checks
}

/// Meta's verification handshake against the api's `/webhook`.
async fn check_webhook(settings: &Settings, api_url: &str) -> Check {
    let env = &settings.webhook.verify_token_env;
    let Some(verify_token) = &settings.webhook.verify_token else {
        return Check::fail(
            None,
            "webhook",
            format!("{env} is not set"),
            format!("Set {env} to the verify token configured for the webhook in the Meta app."),
        );
    };
    let url = format!("{api_url}/webhook");
    let challenge = (unix_ms() % 1_000_000_000).to_string();
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(error) => return Check::fail(None, "webhook", error.to_string(), "Retry."),
    };
    let answer = client
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.challenge", challenge.as_str()),
            ("hub.verify_token", verify_token.expose_secret()),
        ])
        .send()
        .await;
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            return Check::fail(
                None,
                "webhook",
                format!("{url} does not answer: {}", error.without_url()),
                format!(
                    "Start the api (gateway api) or pass its address with --api-url; Meta must reach {url}."
                ),
            );
        }
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if status == 200 && body == challenge {
        Check::pass(
            None,
            "webhook",
            format!("{url} answers the verification handshake"),
        )
    } else if status == 403 {
        Check::fail(
            None,
            "webhook",
            format!("{url} refused the verify token (HTTP 403)"),
            format!(
                "Make {env} the same verify token the api runs with and the Meta app is configured with."
            ),
        )
    } else {
        Check::fail(
            None,
            "webhook",
            format!("{url} answered HTTP {status} without the challenge"),
            "Point --api-url at the gateway api, whose GET /webhook echoes hub.challenge.",
        )
    }
}
