//! How the sandbox is set up from the gateway's own configuration: one
//! simulated number per configured sender (same phone_number_id, WABA and
//! token), every configured fallback template registered as approved, and
//! status webhooks signed with the gateway's app secret.

use gateway_config::Settings;
use gateway_sandbox::{NumberConfig, SandboxConfig, TemplateConfig, WebhookTarget};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

pub fn sandbox_config(settings: &Settings) -> anyhow::Result<SandboxConfig> {
    let mut config = SandboxConfig::default();
    for sender in &settings.senders {
        let token = sender.access_token.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "the sandbox needs {} to check the sender's token",
                sender.access_token_env
            )
        })?;
        let mut number = NumberConfig::new(
            &sender.phone_number_id,
            &sender.waba_id,
            token.expose_secret(),
        );
        // Meta's limit is 80; the gateway keeps under its configured rate.
        number.rate_per_second = number.rate_per_second.max(sender.rate_per_second);
        config.numbers.push(number);
        if let Some(template) = sender.fallback_template.as_ref().and_then(|t| {
            let mut fields = Map::new();
            t.write_graph_fields(&mut fields);
            template_config(fields.get("template")?)
        }) {
            let known = config
                .templates
                .iter()
                .any(|t| t.name == template.name && t.language == template.language);
            if !known {
                config.templates.push(template);
            }
        }
    }
    if let Some(url) = &settings.sandbox.webhook_url {
        // The sandbox plays one Meta app: it signs with the first secret.
        let secret = settings.webhook.app_secrets.first().ok_or_else(|| {
            anyhow::anyhow!(
                "sandbox.webhook_url needs the app secret in {}",
                settings.webhook.app_secret_envs.join(" or ")
            )
        })?;
        config.webhook = Some(WebhookTarget::new(url, secret.expose_secret()));
    }
    Ok(config)
}

/// A registry entry matching a template object: its name, language and the
/// parameters it is sent with (header, body, and each button by its index).
fn template_config(template: &Value) -> Option<TemplateConfig> {
    let name = template.get("name")?.as_str()?;
    let language = template.get("language")?.get("code")?.as_str()?;
    let components: Vec<&Value> = template
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let of_type = |kind: &'static str| {
        components.iter().copied().filter(move |c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    };
    let parameters = |c: &Value| -> Vec<Value> {
        c.get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let body_parameters = of_type("body").map(|c| parameters(c).len()).sum();
    let mut config = TemplateConfig::new(name, language, body_parameters);
    if let Some(header) = of_type("header").next() {
        let given = parameters(header);
        let kind = given
            .first()
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("text")
            .to_ascii_uppercase();
        config.header = Some(kind);
        config.header_parameters = given.len();
    }
    let mut buttons: Vec<(usize, &Value)> = of_type("button")
        .filter_map(|b| {
            let index = match b.get("index")? {
                Value::Number(n) => usize::try_from(n.as_u64()?).ok()?,
                Value::String(s) => s.parse().ok()?,
                _ => return None,
            };
            Some((index, b))
        })
        .collect();
    buttons.sort_by_key(|(index, _)| *index);
    for (index, button) in buttons {
        while config.buttons.len() < index {
            config = config.with_button("QUICK_REPLY", 0);
        }
        let kind = button
            .get("sub_type")
            .and_then(Value::as_str)
            .unwrap_or("quick_reply")
            .to_ascii_uppercase();
        config = config.with_button(kind, parameters(button).len());
    }
    Some(config)
}
