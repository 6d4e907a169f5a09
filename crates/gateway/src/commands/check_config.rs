//! `gateway check-config [--role api|worker|all]`: loads the configuration
//! as that process would and reports every missing secret variable (by
//! name, never its value) and any bad value, or `ok` with a summary.
//! Exits 1 when there is a problem.
//!
//! A bad value stops loading where it is found, so only the first one is
//! reported; missing secrets are all reported at once.

use gateway_config::{ConfigError, Environment, Role, Settings};
use serde_json::{Value, json};

use super::{AlreadyReported, redacted_url};

/// The process whose configuration is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckRole {
    Api,
    Worker,
    /// Both the api and the worker.
    All,
}

impl CheckRole {
    fn roles(self) -> &'static [Role] {
        match self {
            Self::Api => &[Role::Api],
            Self::Worker => &[Role::Worker],
            Self::All => &[Role::Api, Role::Worker],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::All => "all",
        }
    }
}

/// One problem: the key it is about, the variable (for a missing secret)
/// and what is wrong.
struct Problem {
    key: Option<String>,
    variable: Option<String>,
    message: String,
}

impl Problem {
    fn from_error(error: &ConfigError) -> Self {
        let (key, variable) = match error {
            ConfigError::Invalid { key, .. } => (Some(key.clone()), None),
            ConfigError::MissingSecret { key, variable } => {
                (Some(key.clone()), Some(variable.clone()))
            }
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => (None, None),
        };
        Self {
            key,
            variable,
            message: error.to_string(),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "key": self.key, "variable": self.variable, "message": self.message })
    }
}

pub fn run(config: &str, role: CheckRole, json: bool) -> anyhow::Result<()> {
    let env = Environment::from_process();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut summary = None;
    match Settings::load(config, &env, Role::Ops) {
        Err(error) => problems.push(Problem::from_error(&error)),
        Ok(settings) => {
            problems.extend(missing_secrets(&settings, &env, role));
            warnings.extend(webhook_warnings(&settings, &env, role));
            if problems.is_empty() {
                // What else a role checks (at least one client, ...).
                for r in role.roles() {
                    if let Err(error) = Settings::load(config, &env, *r) {
                        problems.push(Problem::from_error(&error));
                    }
                }
            }
            summary = Some(summarize(&settings));
        }
    }
    let ok = problems.is_empty();
    if json {
        let report = json!({
            "ok": ok,
            "config": config,
            "role": role.as_str(),
            "problems": problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
            "warnings": warnings,
            "summary": summary.as_ref().filter(|_| ok),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if ok {
        println!("ok: {config} for role {}", role.as_str());
        if let Some(summary) = &summary {
            print_summary(summary);
        }
        for warning in &warnings {
            println!("warning: {warning}");
        }
    } else {
        eprintln!(
            "{config} for role {}: {} problem(s)",
            role.as_str(),
            problems.len()
        );
        for problem in &problems {
            eprintln!("  error: {}", problem.message);
        }
        for warning in &warnings {
            eprintln!("  warning: {warning}");
        }
    }
    if ok {
        Ok(())
    } else {
        Err(AlreadyReported.into())
    }
}

/// Every secret variable the role needs that is unset (or empty), each
/// once, with the roles that need it.
fn missing_secrets(settings: &Settings, env: &Environment, role: CheckRole) -> Vec<Problem> {
    let roles = role.roles();
    let api = roles.contains(&Role::Api);
    let worker = roles.contains(&Role::Worker);
    // (key, variable, the processes that need it), in the file's order.
    let mut wanted: Vec<(String, String, Vec<&str>)> = Vec::new();
    // Both roles need the same secrets but the subscribers': the api
    // checks client keys and moves media with the senders' tokens; a
    // worker sends with the tokens and signs callbacks with the keys.
    let client_users: Vec<&str> = [(api, "api"), (worker, "worker")]
        .into_iter()
        .filter_map(|(needed, by)| needed.then_some(by))
        .collect();
    for (i, s) in settings.senders.iter().enumerate() {
        wanted.push((
            format!("senders[{i}].access_token_env"),
            s.access_token_env.clone(),
            client_users.clone(),
        ));
    }
    for (i, c) in settings.clients.iter().enumerate() {
        wanted.push((
            format!("clients[{i}].key_env"),
            c.key_env.clone(),
            client_users.clone(),
        ));
    }
    if worker {
        for (i, s) in settings.subscribers.iter().enumerate() {
            wanted.push((
                format!("subscribers[{i}].secret_env"),
                s.secret_env.clone(),
                vec!["worker"],
            ));
        }
    }
    wanted
        .into_iter()
        .filter(|(_, variable, _)| env.get(variable).is_none_or(str::is_empty))
        .map(|(key, variable, by)| Problem {
            message: format!(
                "config key `{key}`: environment variable {variable} is not set (needed by the {})",
                by.join(" and the ")
            ),
            key: Some(key),
            variable: Some(variable),
        })
        .collect()
}

/// The api starts without the webhook's secrets, but `/webhook` cannot work.
fn webhook_warnings(settings: &Settings, env: &Environment, role: CheckRole) -> Vec<String> {
    if role == CheckRole::Worker {
        return Vec::new();
    }
    let webhook = &settings.webhook;
    let mut warnings = Vec::new();
    if webhook.verify_token.is_none() {
        warnings.push(format!(
            "webhook.verify_token_env: environment variable {} is not set; GET /webhook (Meta's verification) will answer 403",
            webhook.verify_token_env
        ));
    }
    let unset: Vec<&str> = webhook
        .app_secret_envs
        .iter()
        .map(String::as_str)
        .filter(|name| env.get(name).is_none_or(str::is_empty))
        .collect();
    if webhook.app_secrets.is_empty() {
        warnings.push(format!(
            "webhook.app_secret_env: environment variable {} is not set; POST /webhook will answer 503",
            unset.join(", ")
        ));
    } else if !unset.is_empty() {
        warnings.push(format!(
            "webhook.app_secret_env: {} not set; webhooks signed with that app's secret will be refused",
            unset.join(", ")
        ));
    }
    warnings
}

fn summarize(settings: &Settings) -> Value {
    let sender_name = |pnid: &str| {
        settings
            .sender(pnid)
            .map_or_else(|| pnid.to_owned(), |s| s.name.clone())
    };
    json!({
        "senders": settings.senders.iter().map(|s| json!({
            "name": s.name,
            "phone_number_id": s.phone_number_id,
            "waba_id": s.waba_id,
            "rate_per_second": s.rate_per_second,
            "fallback_template": s.fallback_template.is_some(),
            "access_token_env": s.access_token_env,
        })).collect::<Vec<_>>(),
        "clients": settings.clients.iter().map(|c| json!({
            "name": c.name,
            "key_env": c.key_env,
            "senders": c.senders.iter().map(|pnid| sender_name(pnid)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "subscribers": settings.subscribers.iter().map(|s| {
            let mut events = Vec::new();
            if s.messages { events.push("messages"); }
            if s.statuses { events.push("statuses"); }
            json!({
                "name": s.name,
                "url": redacted_url(&s.url),
                "events": events,
                "secret_env": s.secret_env,
            })
        }).collect::<Vec<_>>(),
        "listen": {
            "api": settings.api.listen.to_string(),
            "worker": settings.worker.listen.to_string(),
        },
        "redis": redacted_url(&settings.redis.url),
        "graph": format!("{} {}", settings.graph.base_url, settings.graph.version),
    })
}

fn print_summary(summary: &Value) {
    let list = |name: &str| summary[name].as_array().cloned().unwrap_or_default();
    let senders: Vec<String> = list("senders")
        .iter()
        .map(|s| {
            format!(
                "{} ({}, {}/s{})",
                s["name"].as_str().unwrap_or(""),
                s["phone_number_id"].as_str().unwrap_or(""),
                s["rate_per_second"],
                if s["fallback_template"] == true {
                    ", fallback template"
                } else {
                    ""
                }
            )
        })
        .collect();
    let clients: Vec<String> = list("clients")
        .iter()
        .map(|c| {
            let senders: Vec<&str> = c["senders"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{} (senders {})",
                c["name"].as_str().unwrap_or(""),
                senders.join(", ")
            )
        })
        .collect();
    let subscribers: Vec<String> = list("subscribers")
        .iter()
        .map(|s| {
            format!(
                "{} ({})",
                s["name"].as_str().unwrap_or(""),
                s["url"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!("  senders      {}: {}", senders.len(), senders.join(", "));
    println!("  clients      {}: {}", clients.len(), clients.join(", "));
    println!(
        "  subscribers  {}{}",
        subscribers.len(),
        if subscribers.is_empty() {
            String::new()
        } else {
            format!(": {}", subscribers.join(", "))
        }
    );
    println!(
        "  listen       api {}, worker {}",
        summary["listen"]["api"].as_str().unwrap_or(""),
        summary["listen"]["worker"].as_str().unwrap_or("")
    );
    println!("  redis        {}", summary["redis"].as_str().unwrap_or(""));
    println!("  graph        {}", summary["graph"].as_str().unwrap_or(""));
}
