//! The client for Meta's Graph API (the WhatsApp Cloud API): one pooled
//! `reqwest` client per process, a send call that POSTs a ready-made body,
//! and Meta's answers parsed into typed successes and errors. Nothing here
//! decides what to do about an error; see the domain's error classes.
//!
//! Routes touched: `POST {base_url}/{version}/{phone_number_id}/messages`
//! (messages, and read receipts with the typing indicator),
//! and the management reads in `management.rs` (`debug_token`, a number's
//! health, a WABA's numbers, templates and subscribed apps), and media in
//! `media.rs` (upload, metadata, download, all streamed).
//! Access tokens go only into the `Authorization` header, marked sensitive,
//! and never into an error or a log line.

mod connections;
mod error;
mod management;
mod media;
mod response;

pub use connections::on_connected;
pub use error::GraphError;
pub use management::{
    MANAGEMENT_SCOPE, MESSAGING_SCOPE, PhoneNumberInfo, SubscribedApp, TemplateInfo, Throughput,
    TokenError, TokenInfo, throughput_limit,
};
pub use media::{MEDIA_TRANSFER_TIMEOUT, MediaInfo, MediaUploaded, is_media_gone};
pub use response::SendAccepted;

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

/// Where and as whom one sender's messages are POSTed.
#[derive(Clone)]
pub struct SenderEndpoint {
    url: reqwest::Url,
    /// `Bearer <token>`, marked sensitive so it is never printed.
    authorization: HeaderValue,
}

impl std::fmt::Debug for SenderEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderEndpoint")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

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
            // The Graph API does not redirect, a redirect must not carry the
            // token elsewhere, and retrying is the worker's decision (with
            // its backoff and limits): both layers would only cost CPU.
            .redirect(reqwest::redirect::Policy::none())
            .connector_layer(connections::ReportConnected)
            .retry(reqwest::retry::never())
            .user_agent(concat!("whatsapp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Connection(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            versioned_base: format!("{}/{}", base_url.trim_end_matches('/'), version),
        })
    }

    /// The send URL and authorization of one sender, prepared once: parsing
    /// a URL and formatting a header for every message cost a worker more
    /// CPU than anything else it did per message but the call itself.
    pub fn endpoint(
        &self,
        phone_number_id: &str,
        token: &SecretString,
    ) -> Result<SenderEndpoint, GraphError> {
        let url = format!("{}/{phone_number_id}/messages", self.versioned_base);
        let url = reqwest::Url::parse(&url)
            .map_err(|e| GraphError::Config(format!("bad send URL {url}: {e}")))?;
        Ok(SenderEndpoint {
            url,
            authorization: bearer(token)?,
        })
    }

    /// POSTs a message. `body` is the complete Graph API request body (JSON).
    pub async fn send_message(
        &self,
        endpoint: &SenderEndpoint,
        body: String,
    ) -> Result<SendAccepted, GraphError> {
        let response = self
            .http
            .post(endpoint.url.clone())
            .header(AUTHORIZATION, endpoint.authorization.clone())
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

    /// Marks an inbound message read (Meta's `status: read`); with
    /// `typing`, also shows the typing indicator, which Meta clears after
    /// 25 s or with the next message.
    pub async fn mark_read(
        &self,
        endpoint: &SenderEndpoint,
        message_id: &str,
        typing: bool,
    ) -> Result<(), GraphError> {
        let mut body = serde_json::json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        });
        if typing {
            body["typing_indicator"] = serde_json::json!({"type": "text"});
        }
        let response = self
            .http
            .post(endpoint.url.clone())
            .header(AUTHORIZATION, endpoint.authorization.clone())
            .json(&body)
            .send()
            .await
            .map_err(GraphError::from_transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(GraphError::from_transport)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(GraphError::from_error_body(status.as_u16(), &bytes))
        }
    }
}

/// The `Authorization` header of a token, marked sensitive so that no
/// debug output of a request shows it.
pub(crate) fn bearer(token: &SecretString) -> Result<HeaderValue, GraphError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .map_err(|_| GraphError::Config("the access token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The body of a successful answer, or Meta's error ([`meta_error`]).
pub(crate) async fn success_body(response: reqwest::Response) -> Result<bytes::Bytes, GraphError> {
    if !response.status().is_success() {
        return Err(meta_error(response).await);
    }
    response
        .bytes()
        .await
        .map_err(|e| GraphError::from_transport(e.without_url()))
}

/// What an unsuccessful answer says: Meta's error in its body, or the
/// transport's without the URL (a query or a download URL may carry a
/// credential).
pub(crate) async fn meta_error(response: reqwest::Response) -> GraphError {
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(bytes) => GraphError::from_error_body(status, &bytes),
        Err(e) => GraphError::from_transport(e.without_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_token_stays_home() {
        let elsewhere = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = elsewhere.local_addr().expect("addr");
        let graph = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", graph.local_addr().expect("addr"));
        tokio::spawn(async move {
            let (mut socket, _) = graph.accept().await.expect("accept");
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/v25.0/1/messages\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        });

        let client = GraphClient::new(&base, "v25.0", Duration::from_secs(5), 1).expect("client");
        let endpoint = client
            .endpoint("1", &SecretString::from("secret-token"))
            .expect("endpoint");
        let result = client.send_message(&endpoint, "{}".into()).await;

        assert!(
            matches!(result, Err(GraphError::Http { http_status: 307 })),
            "the redirect itself is the answer: {result:?}"
        );
        // A followed redirect would have connected before the answer came back.
        let followed = tokio::time::timeout(Duration::from_millis(50), elsewhere.accept()).await;
        assert!(followed.is_err(), "the client followed the redirect");
    }

    #[tokio::test]
    async fn a_call_is_told_when_the_connection_it_opened_is_open() {
        // Meta, answering every request on a connection it keeps open.
        let graph = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", graph.local_addr().expect("addr"));
        tokio::spawn(async move {
            let (mut socket, _) = graph.accept().await.expect("accept");
            let mut buffer = [0u8; 4096];
            let body =
                r#"{"messaging_product":"whatsapp","contacts":[],"messages":[{"id":"wamid.A"}]}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            // One read per request: each is one small write.
            while socket.read(&mut buffer).await.is_ok_and(|n| n > 0) {
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let client = GraphClient::new(&base, "v25.0", Duration::from_secs(5), 1).expect("client");
        let endpoint = client
            .endpoint("1", &SecretString::from("secret-token"))
            .expect("endpoint");
        let opened = Arc::new(AtomicUsize::new(0));
        let call = |opened: Arc<AtomicUsize>| {
            on_connected(
                move || {
                    opened.fetch_add(1, Ordering::SeqCst);
                },
                client.send_message(&endpoint, "{}".into()),
            )
        };

        call(opened.clone()).await.expect("the first call");
        assert_eq!(opened.load(Ordering::SeqCst), 1, "it opened one");
        call(opened.clone()).await.expect("the second call");
        assert_eq!(opened.load(Ordering::SeqCst), 1, "the second found it kept");
    }
}
