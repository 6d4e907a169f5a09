//! Read calls on Meta's management endpoints, for `gateway doctor` and the
//! worker's sender-health poll:
//!
//! - `GET /{version}/debug_token?input_token=T` → [`TokenInfo`]
//! - `GET /{version}/{phone_number_id}?fields=...` → [`PhoneNumberInfo`]
//! - `GET /{version}/{waba_id}/phone_numbers` → [`PhoneNumberInfo`]s
//! - `GET /{version}/{waba_id}/message_templates[?name=N]` → [`TemplateInfo`]s
//!   (with their `components`; every page, following Meta's `after` cursor)
//! - `GET /{version}/{waba_id}/subscribed_apps` → [`SubscribedApp`]s
//!
//! The token goes in the `Authorization` header only (marked sensitive);
//! `debug_token` needs the inspected token in the query, as Meta defines
//! it, and that URL is never put in an error or a log line.

use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{GraphClient, GraphError};

/// The scope sends need.
pub const MESSAGING_SCOPE: &str = "whatsapp_business_messaging";
/// The scope reading numbers, templates and subscriptions needs.
pub const MANAGEMENT_SCOPE: &str = "whatsapp_business_management";

/// What `debug_token` says about a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub is_valid: bool,
    /// Unix seconds; 0 (or absent) never expires.
    #[serde(default)]
    pub expires_at: i64,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, rename = "type")]
    pub token_type: Option<String>,
    #[serde(default)]
    pub app_id: Option<String>,
    /// Why the token is not valid, when Meta says.
    #[serde(default)]
    pub error: Option<TokenError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenError {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

impl TokenInfo {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// When it expires, `None` for never.
    pub fn expires(&self) -> Option<i64> {
        (self.expires_at > 0).then_some(self.expires_at)
    }
}

/// A business phone number as the phone-number node shows it. Fields not
/// asked for (or not sent) are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhoneNumberInfo {
    pub id: String,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub code_verification_status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// `CONNECTED`, `DISCONNECTED`, `FLAGGED`, `RESTRICTED`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// `CLOUD_API` once registered for the Cloud API.
    #[serde(default)]
    pub platform_type: Option<String>,
    #[serde(default)]
    pub throughput: Option<Throughput>,
    /// Deprecated by Meta for the field below; read when that is absent.
    #[serde(default)]
    pub messaging_limit_tier: Option<String>,
    /// The business portfolio's messaging limit (`TIER_2K`, ...).
    #[serde(default)]
    pub whatsapp_business_manager_messaging_limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Throughput {
    /// `STANDARD` (80 messages per second), `HIGH` (1,000) or `NOT_APPLICABLE`.
    pub level: String,
}

impl PhoneNumberInfo {
    pub fn throughput_level(&self) -> Option<&str> {
        self.throughput.as_ref().map(|t| t.level.as_str())
    }

    /// The portfolio's messaging limit tier, from the current field or
    /// the deprecated one.
    pub fn messaging_limit(&self) -> Option<&str> {
        self.whatsapp_business_manager_messaging_limit
            .as_deref()
            .or(self.messaging_limit_tier.as_deref())
    }
}

/// The messages per second Meta allows a throughput level; `None` when the
/// level is not one Meta documents.
pub fn throughput_limit(level: &str) -> Option<u32> {
    match level {
        "STANDARD" => Some(80),
        "HIGH" => Some(1_000),
        _ => None,
    }
}

/// One message template in one language.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TemplateInfo {
    pub name: String,
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, ...
    pub status: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// Meta's `components` (`HEADER`, `BODY`, `FOOTER`, `BUTTONS`), as
    /// listed: what the template's parameters are read from.
    #[serde(default)]
    pub components: Option<serde_json::Value>,
}

/// An app subscribed to a WABA's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscribedApp {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct DataOf<T> {
    data: T,
}

/// One page of a listing: its items and, when more follow, the cursor
/// to the next (`paging.next` present, `paging.cursors.after`).
#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    cursors: Option<Cursors>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

impl<T> Page<T> {
    fn after(&self) -> Option<&str> {
        let paging = self.paging.as_ref()?;
        paging.next.as_ref()?;
        paging.cursors.as_ref()?.after.as_deref()
    }
}

/// Templates asked for per page (Meta's default is 25).
const TEMPLATES_PER_PAGE: &str = "100";
/// Pages read at most: 100 × 100 templates, far beyond Meta's limit per
/// WABA; a listing that never ends is cut off here.
const MAX_PAGES: usize = 100;

#[derive(Deserialize)]
struct RawSubscribedApp {
    #[serde(default)]
    whatsapp_business_api_data: Option<AppData>,
}

#[derive(Deserialize)]
struct AppData {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Fields asked of the phone-number node.
const NUMBER_FIELDS: &str = "verified_name,code_verification_status,display_phone_number,quality_rating,platform_type,status,throughput,messaging_limit_tier,whatsapp_business_manager_messaging_limit";

impl GraphClient {
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        token: &SecretString,
    ) -> Result<T, GraphError> {
        let url = format!("{}/{path}", self.versioned_base);
        let response = self
            .http
            .get(url)
            .query(query)
            .header(AUTHORIZATION, crate::bearer(token)?)
            .send()
            .await
            // Without the URL: debug_token's carries a token.
            .map_err(|e| GraphError::from_transport(e.without_url()))?;
        let bytes = crate::success_body(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            GraphError::InvalidResponse(format!("{path} answered an unexpected shape: {e}"))
        })
    }

    /// `debug_token` on `input`, asked with `token` (the same one is fine:
    /// Meta answers for any valid token, and reports an invalid one as
    /// `is_valid: false`, or with a 190 error when the asking token is it).
    pub async fn debug_token(
        &self,
        input: &SecretString,
        token: &SecretString,
    ) -> Result<TokenInfo, GraphError> {
        let body: DataOf<TokenInfo> = self
            .get_json(
                "debug_token",
                &[("input_token", input.expose_secret())],
                token,
            )
            .await?;
        Ok(body.data)
    }

    /// The phone-number node with its health fields.
    pub async fn phone_number(
        &self,
        phone_number_id: &str,
        token: &SecretString,
    ) -> Result<PhoneNumberInfo, GraphError> {
        self.get_json(phone_number_id, &[("fields", NUMBER_FIELDS)], token)
            .await
    }

    /// The numbers a WABA owns.
    pub async fn waba_phone_numbers(
        &self,
        waba_id: &str,
        token: &SecretString,
    ) -> Result<Vec<PhoneNumberInfo>, GraphError> {
        let body: DataOf<Vec<PhoneNumberInfo>> = self
            .get_json(
                &format!("{waba_id}/phone_numbers"),
                &[("fields", NUMBER_FIELDS)],
                token,
            )
            .await?;
        Ok(body.data)
    }

    /// A WABA's templates (only those named `name` when given), every
    /// language, with their components; every page of them.
    pub async fn message_templates(
        &self,
        waba_id: &str,
        name: Option<&str>,
        token: &SecretString,
    ) -> Result<Vec<TemplateInfo>, GraphError> {
        let path = format!("{waba_id}/message_templates");
        let mut templates = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("fields", "name,language,status,category,id,components"),
                ("limit", TEMPLATES_PER_PAGE),
            ];
            if let Some(name) = name {
                query.push(("name", name));
            }
            if let Some(after) = &after {
                query.push(("after", after));
            }
            let page: Page<TemplateInfo> = self.get_json(&path, &query, token).await?;
            let next = page.after().map(str::to_owned);
            templates.extend(page.data);
            match next {
                Some(cursor) if Some(&cursor) != after.as_ref() => after = Some(cursor),
                _ => return Ok(templates),
            }
        }
        Err(GraphError::InvalidResponse(format!(
            "{path} listed more than {MAX_PAGES} pages"
        )))
    }

    /// The apps subscribed to a WABA's webhooks; empty when none is.
    pub async fn subscribed_apps(
        &self,
        waba_id: &str,
        token: &SecretString,
    ) -> Result<Vec<SubscribedApp>, GraphError> {
        let body: DataOf<Vec<RawSubscribedApp>> = self
            .get_json(&format!("{waba_id}/subscribed_apps"), &[], token)
            .await?;
        Ok(body
            .data
            .into_iter()
            .map(|app| {
                let data = app.whatsapp_business_api_data;
                SubscribedApp {
                    id: data.as_ref().and_then(|d| d.id.clone()),
                    name: data.and_then(|d| d.name),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metas_shapes_parse() {
        let token: DataOf<TokenInfo> = serde_json::from_str(
            r#"{"data":{"app_id":"1","type":"SYSTEM_USER","application":"A","data_access_expires_at":0,
            "expires_at":0,"is_valid":true,"scopes":["whatsapp_business_management","whatsapp_business_messaging"],
            "granular_scopes":[{"scope":"whatsapp_business_management","target_ids":["2"]}],"user_id":"3"}}"#,
        )
        .expect("parses");
        assert!(token.data.is_valid && token.data.has_scope(MESSAGING_SCOPE));
        assert_eq!(token.data.expires(), None);
        let invalid: DataOf<TokenInfo> = serde_json::from_str(
            r#"{"data":{"error":{"code":190,"message":"Invalid OAuth access token"},"is_valid":false,"scopes":[]}}"#,
        )
        .expect("parses");
        assert_eq!(invalid.data.error.map(|e| e.code), Some(190));

        let number: PhoneNumberInfo = serde_json::from_str(
            r#"{"verified_name":"V","quality_rating":"GREEN","status":"CONNECTED","throughput":{"level":"STANDARD"},"id":"1"}"#,
        )
        .expect("parses");
        assert_eq!(number.throughput_level(), Some("STANDARD"));
        assert_eq!(throughput_limit("STANDARD"), Some(80));
        assert_eq!(throughput_limit("HIGH"), Some(1_000));
        assert_eq!(throughput_limit("NOT_APPLICABLE"), None);

        let first: Page<TemplateInfo> = serde_json::from_str(
            r#"{"data":[{"name":"hello_world","language":"en_US","status":"APPROVED","category":"UTILITY",
            "components":[{"type":"BODY","text":"Hello"}],"id":"1"}],
            "paging":{"cursors":{"before":"QVFI","after":"QVFJ"},"next":"https://graph.facebook.com/v25.0/2/message_templates?after=QVFJ"}}"#,
        )
        .expect("parses");
        assert_eq!(first.after(), Some("QVFJ"));
        assert!(first.data[0].components.is_some());
        let last: Page<TemplateInfo> = serde_json::from_str(
            r#"{"data":[],"paging":{"cursors":{"before":"QVFI","after":"QVFJ"}}}"#,
        )
        .expect("parses");
        assert_eq!(last.after(), None, "no next: the last page");

        let apps: DataOf<Vec<RawSubscribedApp>> = serde_json::from_str(
            r#"{"data":[{"whatsapp_business_api_data":{"link":"l","name":"App","id":"7"}}]}"#,
        )
        .expect("parses");
        assert_eq!(apps.data.len(), 1);
    }
}
