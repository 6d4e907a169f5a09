//! A `/send` body parsed once into what the gateway stores: the sender, the
//! recipient, the message within Meta's limits, the fallback template and the
//! gateway's own fields. Everything after this trusts these types.

use std::net::IpAddr;
use std::sync::Arc;

use gateway_config::{CallbackSettings, SenderSettings};
use gateway_domain::rules::address_range;
use gateway_domain::templates::TemplateCategory;
use gateway_domain::{FieldError, Lane, OutboundMessage, Recipient};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::Client;
use crate::{ApiError, AppState};

/// The gateway's own fields, beside the Cloud API message object.
const GATEWAY_FIELDS: &[&str] = &[
    "from",
    "to",
    "recipient",
    "fallback_template",
    "idempotency_key",
    "metadata",
    "priority",
    "send_after",
    "expires_at",
    "callback_url",
];

/// How far ahead a message may be scheduled.
const MAX_SCHEDULE_AHEAD_MS: i64 = 30 * 24 * 3600 * 1000;

/// Fields of Meta's message object that are not the content itself.
const ENVELOPE_FIELDS: &[&str] = &["messaging_product", "recipient_type", "type", "context"];

const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
const MAX_METADATA_BYTES: usize = 4_096;
const MAX_CALLBACK_URL_LEN: usize = 2_048;

pub(crate) struct SendRequest {
    pub sender: Arc<SenderSettings>,
    pub recipient: Recipient,
    pub message: OutboundMessage,
    pub fallback: Option<OutboundMessage>,
    pub idempotency_key: Option<String>,
    /// The caller's metadata object, serialised.
    pub metadata: Option<String>,
    pub lane: Lane,
    pub send_after_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub callback_url: Option<String>,
    /// The template's category as the WABA's registry knows it (filled by
    /// `templates::check`).
    pub template_category: Option<TemplateCategory>,
    /// The same for the fallback template.
    pub fallback_category: Option<TemplateCategory>,
}

/// A request turned into what Redis stores.
pub(crate) struct PreparedMessage {
    /// The Graph API body; the worker adds the message id to it.
    pub graph_body: String,
    pub fallback_body: Option<String>,
    /// Identifies the payload for idempotency (empty without a key).
    pub fingerprint: String,
    /// Identifies this request (see `NewMessage::request`).
    pub request_id: String,
}

impl SendRequest {
    pub fn parse(
        body: &Map<String, Value>,
        state: &AppState,
        client: &Client,
    ) -> Result<Self, ApiError> {
        let message_type = body.get("type").and_then(Value::as_str);
        for key in body.keys() {
            let known = GATEWAY_FIELDS.contains(&key.as_str())
                || ENVELOPE_FIELDS.contains(&key.as_str())
                || Some(key.as_str()) == message_type;
            if !known {
                return Err(FieldError::new(
                    key.clone(),
                    "unknown_field",
                    format!("unknown field {key}"),
                )
                .into());
            }
        }
        expect_constant(body, "messaging_product", "whatsapp")?;
        expect_constant(body, "recipient_type", "individual")?;

        let from = optional_str(body, "from")?.ok_or_else(|| FieldError::missing("from"))?;
        let sender = state
            .sender(from)
            .ok_or_else(|| {
                FieldError::new(
                    "from",
                    "unknown_sender",
                    format!("no sender is named {from:?}"),
                )
            })?
            .clone();
        if !client.may_use(&sender.phone_number_id) {
            return Err(ApiError::Forbidden {
                field: "from",
                message: format!("client {} may not send from {}", client.name, sender.name),
            });
        }
        let recipient =
            Recipient::from_fields(optional_str(body, "to")?, optional_str(body, "recipient")?)?;
        let message = OutboundMessage::parse(body)?;
        let fallback = body
            .get("fallback_template")
            .map(|t| OutboundMessage::template(t).map_err(|e| e.within("fallback_template")))
            .transpose()?;
        let idempotency_key = optional_str(body, "idempotency_key")?
            .map(|key| {
                let valid = !key.is_empty()
                    && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                    && key.chars().all(|c| c.is_ascii_graphic());
                if valid {
                    Ok(key.to_owned())
                } else {
                    Err(FieldError::invalid(
                        "idempotency_key",
                        format!("use 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
                    ))
                }
            })
            .transpose()?;
        let metadata = match body.get("metadata") {
            None | Some(Value::Null) => None,
            Some(value @ Value::Object(_)) => {
                let text = value.to_string();
                if text.len() > MAX_METADATA_BYTES {
                    return Err(FieldError::new(
                        "metadata",
                        "too_long",
                        format!(
                            "metadata is {} bytes as JSON; the limit is {MAX_METADATA_BYTES}",
                            text.len()
                        ),
                    )
                    .into());
                }
                Some(text)
            }
            Some(_) => {
                return Err(FieldError::new(
                    "metadata",
                    "invalid_type",
                    "metadata must be an object",
                )
                .into());
            }
        };
        let lane = match optional_str(body, "priority")? {
            None | Some("transactional") => Lane::Transactional,
            Some("bulk") => Lane::Bulk,
            Some(_) => {
                return Err(FieldError::invalid(
                    "priority",
                    "priority must be \"transactional\" or \"bulk\"",
                )
                .into());
            }
        };
        let callback_url = optional_str(body, "callback_url")?
            .map(|url| {
                callback_url(url, &state.settings.callbacks, |host| {
                    client.allows_callback_host(host)
                })
            })
            .transpose()?;
        let now = crate::send::unix_ms();
        let send_after_ms = optional_time(body, "send_after")?;
        let expires_at_ms = optional_time(body, "expires_at")?;
        if send_after_ms.is_some_and(|t| t > now + MAX_SCHEDULE_AHEAD_MS) {
            return Err(FieldError::invalid(
                "send_after",
                "send_after may be at most 30 days ahead",
            )
            .into());
        }
        if let Some(expires) = expires_at_ms {
            if expires <= now {
                return Err(FieldError::invalid("expires_at", "expires_at is already past").into());
            }
            if send_after_ms.is_some_and(|after| after >= expires) {
                return Err(FieldError::invalid(
                    "expires_at",
                    "expires_at must be after send_after",
                )
                .into());
            }
        }
        Ok(Self {
            sender,
            recipient,
            message,
            fallback,
            idempotency_key,
            metadata,
            lane,
            send_after_ms,
            expires_at_ms,
            callback_url,
            template_category: None,
            fallback_category: None,
        })
    }

    /// Renders the Graph API bodies the worker will POST.
    pub fn prepare(&self) -> PreparedMessage {
        let body = self.message.graph_body(&self.recipient);
        let fallback_body = self
            .fallback
            .as_ref()
            .map(|t| t.graph_body(&self.recipient));
        let fingerprint = if self.idempotency_key.is_some() {
            let timing = format!(
                "{:?} {:?} {:?} {:?}",
                self.lane, self.send_after_ms, self.expires_at_ms, self.callback_url
            );
            fingerprint(&[
                &self.sender.phone_number_id,
                &body,
                fallback_body.as_deref().unwrap_or(""),
                self.metadata.as_deref().unwrap_or(""),
                &timing,
            ])
        } else {
            String::new()
        };
        PreparedMessage {
            graph_body: body,
            fallback_body,
            fingerprint,
            request_id: ulid::Ulid::new().to_string(),
        }
    }
}

/// Identifies a payload: the same idempotency key with the same fingerprint
/// is a repeat, with another a conflict.
fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        // Length-prefixed, so moving bytes from one part to the next changes the hash.
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}

/// An RFC 3339 time, as Unix ms.
fn optional_time(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<i64>, FieldError> {
    let Some(text) = optional_str(body, field)? else {
        return Ok(None);
    };
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            FieldError::invalid(
                field,
                format!("{field} must be an RFC 3339 time like 2026-11-27T09:30:00Z"),
            )
        })?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map(Some)
        .map_err(|_| FieldError::invalid(field, format!("{field} is out of range")))
}

fn optional_str<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FieldError::new(
            field,
            "invalid_type",
            format!("{field} must be a string"),
        )),
    }
}

fn expect_constant(
    body: &Map<String, Value>,
    field: &'static str,
    expected: &str,
) -> Result<(), FieldError> {
    match optional_str(body, field)? {
        None => Ok(()),
        Some(value) if value == expected => Ok(()),
        Some(_) => Err(FieldError::invalid(
            field,
            format!("{field} must be {expected:?}"),
        )),
    }
}

/// An absolute http(s) URL without spaces, control characters or
/// credentials, where the workers POST status events: `https` unless
/// `callbacks.require_https` is off; its host among the client's
/// `callback_hosts` (when it has any); and, unless
/// `callbacks.allow_private_addresses`, not an IP literal in a refused range
/// (loopback, private, link-local and metadata, ...) nor `localhost`. A
/// name's addresses are not known here: the worker checks what it resolves
/// to when it delivers, on the address it connects to. `url` is parsed as
/// the workers' HTTP client parses it (the `url` crate), so both see the
/// same host (`http://0x7f.1/` is 127.0.0.1 to both).
fn callback_url(
    url: &str,
    rules: &CallbackSettings,
    allows_host: impl Fn(&str) -> bool,
) -> Result<String, FieldError> {
    const FIELD: &str = "callback_url";
    let invalid = || {
        FieldError::invalid(
            FIELD,
            format!(
                "callback_url must be an absolute http(s) URL of at most {MAX_CALLBACK_URL_LEN} characters"
            ),
        )
    };
    // Spelled out as written, not as a lenient parser repairs it
    // (`https:///x` would be `https://x/`).
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host_present = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
    if !host_present
        || url.len() > MAX_CALLBACK_URL_LEN
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let parsed = url::Url::parse(url).map_err(|_| invalid())?;
    match parsed.scheme() {
        "https" => {}
        "http" if !rules.require_https => {}
        "http" => {
            return Err(FieldError::new(
                FIELD,
                "callback_not_https",
                "callback_url must be an https:// URL (callbacks.require_https is on)",
            ));
        }
        _ => return Err(invalid()),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(FieldError::new(
            FIELD,
            "callback_userinfo",
            "callback_url may not carry a user name or password: \
             receivers check the gateway's signature instead",
        ));
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) => {
            // `hooks.example.com.` is `hooks.example.com`.
            let name = name.strip_suffix('.').unwrap_or(name);
            if !rules.allow_private_addresses && address_range::is_localhost_name(name) {
                return Err(private_address(&format!("{name} is loopback")));
            }
            name.to_owned()
        }
        Some(url::Host::Ipv4(ip)) => ip_host(IpAddr::V4(ip), rules)?,
        Some(url::Host::Ipv6(ip)) => ip_host(IpAddr::V6(ip), rules)?,
        None => return Err(invalid()),
    };
    if !allows_host(&host) {
        return Err(FieldError::new(
            FIELD,
            "callback_host_not_allowed",
            format!("callback_url's host {host} is not among this client's callback_hosts"),
        ));
    }
    Ok(url.to_owned())
}

/// An IP literal's host text for the allow-list, if the address may be called.
fn ip_host(ip: IpAddr, rules: &CallbackSettings) -> Result<String, FieldError> {
    if !rules.allow_private_addresses
        && let Some(range) = address_range::refused_range(ip)
    {
        return Err(private_address(&format!("{ip} is in the {range} range")));
    }
    Ok(ip.to_string())
}

fn private_address(why: &str) -> FieldError {
    FieldError::new(
        "callback_url",
        "callback_private_address",
        format!(
            "callback_url may not reach loopback, private, link-local or metadata addresses \
             (callbacks.allow_private_addresses is off): {why}"
        ),
    )
}

#[cfg(test)]
mod callback_url_tests {
    use super::*;

    const PRODUCTION: CallbackSettings = CallbackSettings {
        require_https: true,
        allow_private_addresses: false,
        max_response_bytes: 65_536,
    };
    const LOCAL: CallbackSettings = CallbackSettings {
        require_https: false,
        allow_private_addresses: true,
        max_response_bytes: 65_536,
    };

    fn code(url: &str, rules: &CallbackSettings) -> &'static str {
        match callback_url(url, rules, |_| true) {
            Ok(_) => "ok",
            Err(e) => {
                assert_eq!(e.field, "callback_url");
                e.code
            }
        }
    }

    #[test]
    fn production_takes_public_https_urls_only() {
        assert_eq!(
            code("https://hooks.example.com/status?t=1", &PRODUCTION),
            "ok"
        );
        assert_eq!(code("https://93.184.216.34:8443/x", &PRODUCTION), "ok");
        assert_eq!(code("https://[2606:4700::1111]/x", &PRODUCTION), "ok");
        assert_eq!(
            code("http://hooks.example.com/", &PRODUCTION),
            "callback_not_https"
        );
        for url in [
            "https://127.0.0.1/",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[fd00::1]:8443/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://127.0.0.1./",
            "https://[::]/",
            "https://0.0.0.0:8080/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost:8080/",
        ] {
            assert_eq!(code(url, &PRODUCTION), "callback_private_address", "{url}");
        }
        for url in [
            "https://user:pw@hooks.example.com/",
            "https://user@hooks.example.com/",
        ] {
            assert_eq!(code(url, &PRODUCTION), "callback_userinfo", "{url}");
        }
        for url in [
            "ftp://hooks.example.com/",
            "hooks.example.com/x",
            "https://",
            "https:///x",
            "https://a b/",
            "https://[::1/",
        ] {
            assert_eq!(code(url, &PRODUCTION), "invalid_value", "{url}");
        }
    }

    #[test]
    fn local_settings_allow_plain_http_to_loopback() {
        assert_eq!(code("http://127.0.0.1:8080/events", &LOCAL), "ok");
        assert_eq!(code("http://localhost:8080/events", &LOCAL), "ok");
        assert_eq!(code("https://10.0.0.1/", &LOCAL), "ok");
        assert_eq!(code("ftp://127.0.0.1/", &LOCAL), "invalid_value");
        assert_eq!(code("http://u:p@127.0.0.1/", &LOCAL), "callback_userinfo");
    }

    #[test]
    fn the_host_must_be_one_the_client_allows() {
        let hosts =
            |host: &str| host == "hooks.example.com" || host.ends_with(".hooks.example.com");
        let check = |url: &str| callback_url(url, &PRODUCTION, hosts).map_err(|e| e.code);
        assert!(check("https://hooks.example.com/x").is_ok());
        assert!(check("https://HOOKS.example.com./x").is_ok());
        assert!(check("https://eu.hooks.example.com/x").is_ok());
        assert_eq!(
            check("https://evil.example.com/x"),
            Err("callback_host_not_allowed")
        );
        assert_eq!(
            check("https://hooks.example.com.evil.net/"),
            Err("callback_host_not_allowed")
        );
        assert_eq!(
            check("https://93.184.216.34/"),
            Err("callback_host_not_allowed")
        );
    }
}
