//! Starting the sandbox and a webhook receiver, and waiting for conditions
//! with a deadline instead of sleeping for fixed times.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gateway_sandbox::{NumberConfig, Sandbox, SandboxConfig, WebhookTarget};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

pub const NUMBER: &str = "106540352242922";
pub const WABA: &str = "102290129340398";
pub const TOKEN: &str = "sandbox-token";
pub const APP_SECRET: &str = "app-secret";
pub const USER: &str = "+1 (650) 555-1234";
pub const USER_DIGITS: &str = "16505551234";
const DEADLINE: Duration = Duration::from_secs(10);

pub fn config() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    let mut number = NumberConfig::new(NUMBER, WABA, TOKEN);
    number.display_phone_number = "15550783881".into();
    config.numbers.push(number);
    config
}

pub struct TestSandbox {
    pub sandbox: Sandbox,
    pub base: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

impl TestSandbox {
    pub async fn start(config: SandboxConfig) -> Self {
        let sandbox = Sandbox::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let sandbox = sandbox.clone();
            let shutdown = shutdown.clone();
            async move { sandbox.serve(listener, shutdown).await }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Self {
            sandbox,
            base,
            client,
            shutdown,
        }
    }

    /// Sends `body` from the configured number with its token.
    pub async fn send(&self, body: &Value) -> (StatusCode, Value) {
        self.send_as(NUMBER, Some(TOKEN), body).await
    }

    pub async fn send_as(
        &self,
        number: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}/v25.0/{number}/messages", self.base))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/admin/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
        let bytes = response.bytes().await.expect("a body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON")
        };
        (status, value)
    }

    /// A user message through `POST /admin/inbound`; returns its wamid.
    pub async fn inbound(&self, from: &str, text: &str) -> String {
        let body = json!({"phone_number_id": NUMBER, "from": from, "text": text});
        let (status, answer) = self
            .admin(reqwest::Method::POST, "inbound", Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["wamid"].as_str().expect("a wamid").to_owned()
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn text(to: &str, body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
           "type": "text", "text": {"preview_url": false, "body": body}})
}

pub fn template(to: &str, name: &str, parameters: &[&str]) -> Value {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|p| json!({"type": "text", "text": p}))
        .collect();
    json!({"messaging_product": "whatsapp", "to": to, "type": "template", "template": {
        "name": name, "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": parameters}]}})
}

/// Asserts Meta's error shape and returns the code.
pub fn error_code(body: &Value) -> i64 {
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error["fbtrace_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    error["code"].as_i64().expect("a numeric code")
}

/// Polls `check` until it yields a value or the deadline passes.
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    /// When the POST reached the receiver (before it answered).
    pub at: Instant,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub answered: StatusCode,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook JSON")
    }

    pub fn signature_is_valid(&self, secret: &str) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(&self.body);
        self.signature.as_deref()
            == Some(&format!(
                "sha256={}",
                hex::encode(mac.finalize().into_bytes())
            ))
    }
}

/// A webhook endpoint that records every POST and answers 500 to the
/// first `fail_first` of them.
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            received: Arc::clone(&received),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
        };
        let app = axum::Router::new()
            .route("/webhook", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/webhook", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Self {
            url,
            received,
            shutdown,
        }
    }

    pub fn target(&self) -> WebhookTarget {
        let mut target = WebhookTarget::new(self.url.clone(), APP_SECRET);
        target.retry_initial_ms = 50;
        target.retry_max_ms = 200;
        target
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Statuses from POSTs answered with 200, in arrival order.
    pub fn statuses(&self) -> Vec<Value> {
        self.values("statuses")
    }

    /// Inbound messages from POSTs answered with 200.
    pub fn messages(&self) -> Vec<Value> {
        self.values("messages")
    }

    fn values(&self, field: &str) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|r| r.answered == StatusCode::OK)
            .flat_map(|r| {
                r.json()["entry"][0]["changes"][0]["value"][field]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits until the statuses of `wamid` include all of `kinds`; returns
    /// the statuses of `wamid` in arrival order.
    pub async fn wait_for_statuses(&self, wamid: &str, kinds: &[&str]) -> Vec<Value> {
        wait_for(&format!("statuses {kinds:?} of {wamid}"), || {
            let of_message: Vec<Value> = self
                .statuses()
                .into_iter()
                .filter(|s| s["id"] == wamid)
                .collect();
            kinds
                .iter()
                .all(|kind| of_message.iter().any(|s| s["status"] == *kind))
                .then_some(of_message)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let fail = state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    if let Ok(mut received) = state.received.lock() {
        received.push(Received {
            at: Instant::now(),
            signature: header("x-hub-signature-256"),
            content_type: header("content-type"),
            body,
            answered,
        });
    }
    answered
}
