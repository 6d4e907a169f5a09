//! The client for Meta's Graph API (the WhatsApp Cloud API): one pooled
//! `reqwest` client per process, a send call that POSTs a ready-made body,
//! and Meta's answers parsed into typed successes and errors. Nothing here
//! decides what to do about an error; see the domain's error classes.
//!
//! Routes touched: `POST {base_url}/{version}/{phone_number_id}/messages`.
//! Access tokens go only into the `Authorization` header, marked sensitive,
//! and never into an error or a log line.

mod error;
mod response;

pub use error::GraphError;
pub use response::SendAccepted;

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    /// `{base_url}/{version}`, without a trailing slash.
    versioned_base: String,
}

impl GraphClient {
    /// `max_connections`: how many calls may be in flight at once, and so
    /// how many connections are kept open between calls.
    pub fn new(
        base_url: &str,
        version: &str,
        timeout: Duration,
        max_connections: usize,
    ) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            // Every call in flight keeps its connection for the next: opening
            // and closing connections cost a sixth of a worker's CPU when
            // fewer were kept.
            .pool_max_idle_per_host(max_connections)
            .tcp_nodelay(true)
            .user_agent(concat!("whatsapp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Connection(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            versioned_base: format!("{}/{}", base_url.trim_end_matches('/'), version),
        })
    }

    /// POSTs a message. `body` is the complete Graph API request body (JSON).
    pub async fn send_message(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        body: String,
    ) -> Result<SendAccepted, GraphError> {
        let url = format!("{}/{phone_number_id}/messages", self.versioned_base);
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                GraphError::Config("the access token is not a valid header value".into())
            })?;
        auth.set_sensitive(true);
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await
            .map_err(GraphError::from_transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(GraphError::from_transport)?;
        if status.is_success() {
            SendAccepted::parse(&bytes)
        } else {
            Err(GraphError::from_error_body(status.as_u16(), &bytes))
        }
    }
}
