//! Guarantee 9, the callback half: a `callback_url` never makes the gateway
//! call loopback, private, link-local or metadata addresses unless the
//! configuration allows it. Refused at `/send` when the URL shows it (an IP
//! literal, `localhost`, http where https is required, credentials, a host
//! outside the client's `callback_hosts`), with nothing queued; refused at
//! delivery when a name resolves there, with the message itself sent and
//! the notification given up on; and no delivery follows a redirect.
//!
//! Every address here is on this machine: names are the ones /etc/hosts
//! maps to loopback, never looked up in DNS.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use gateway_notify::{DeadNotification, Notification, Outbox};
use gateway_tests::{GatewayOptions, KEY_ALL, SignedReceiver, TestGateway, wait_until};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// `[callbacks]` as in production.
const PRODUCTION_CALLBACKS: &str =
    "[callbacks]\nrequire_https = true\nallow_private_addresses = false\n";
/// Plain http allowed (the test's receivers have no TLS), private addresses not.
const HTTP_NO_PRIVATE: &str =
    "[callbacks]\nrequire_https = false\nallow_private_addresses = false\n";
/// A client whose callbacks may only go to hooks.example.com and below.
const HOOKS_CLIENT: &str = "[[clients]]\nname = \"hooks\"\nkey_env = \"KEY_HOOKS\"\n\
     senders = [\"s0\"]\ncallback_hosts = [\"hooks.example.com\"]\n";
const KEY_HOOKS: &str = "test-key-hooks";
const SUBSCRIBER_SECRET: &str = "crm-secret";

fn template_to(to: &str, callback_url: &str) -> Value {
    json!({"from": "s0", "to": to, "type": "template",
           "template": {"name": "hello_world", "language": {"code": "en_US"}},
           "callback_url": callback_url})
}

/// A counter sample from the gateway's metrics text, 0 when absent.
fn sample(gateway: &TestGateway, series: &str) -> f64 {
    gateway
        .metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The notifications given up on so far.
async fn dead_notifications(gateway: &TestGateway) -> Vec<DeadNotification> {
    let client = redis::Client::open(gateway.redis.url()).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis answers");
    Outbox::new(conn)
        .dead_letters(1_000)
        .await
        .expect("dead notifications")
}

/// A name other than `localhost` that /etc/hosts maps to an IPv4 loopback
/// address (the machine's own name usually is: 127.0.1.1 on Debian), so
/// that resolving it asks no DNS server.
fn loopback_name_from_etc_hosts() -> Option<(String, Ipv4Addr)> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let address: Ipv4Addr = fields.next()?.parse().ok()?;
        if !address.is_loopback() {
            return None;
        }
        fields
            .map(str::to_ascii_lowercase)
            .find(|name| {
                name != "localhost"
                    && !name.ends_with(".localhost")
                    && name.chars().any(|c| c.is_ascii_alphabetic())
            })
            .map(|name| (name, address))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_into_the_network_are_refused_at_send_and_nothing_is_queued() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        callbacks_toml: PRODUCTION_CALLBACKS.to_owned(),
        extra_toml: HOOKS_CLIENT.to_owned(),
        extra_env: vec![("KEY_HOOKS".into(), KEY_HOOKS.into())],
        ..GatewayOptions::default()
    })
    .await;
    // A port a local service could listen on.
    let port = 8_080;
    let refused = [
        (
            format!("http://127.0.0.1:{port}/events"),
            "callback_not_https",
        ),
        (
            format!("https://127.0.0.1:{port}/events"),
            "callback_private_address",
        ),
        ("https://10.0.0.1/".to_owned(), "callback_private_address"),
        (
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "callback_private_address",
        ),
        ("https://[::1]/".to_owned(), "callback_private_address"),
        (
            "https://[::ffff:192.168.0.1]/".to_owned(),
            "callback_private_address",
        ),
        // 127.0.0.1 written the way a URL parser still reads it.
        ("https://0x7f.1/".to_owned(), "callback_private_address"),
        (
            "https://localhost:8443/".to_owned(),
            "callback_private_address",
        ),
        (
            "https://admin.localhost/".to_owned(),
            "callback_private_address",
        ),
        (
            "http://hooks.example.com/status".to_owned(),
            "callback_not_https",
        ),
        (
            "https://user:secret@hooks.example.com/".to_owned(),
            "callback_userinfo",
        ),
        ("ftp://hooks.example.com/".to_owned(), "invalid_value"),
        ("https://".to_owned(), "invalid_value"),
    ];
    for (url, code) in &refused {
        let (status, body) = gateway.send(&template_to("+16505550100", url)).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "callback_url", "{url}: {body}");
        assert_eq!(body["error"]["code"], *code, "{url}: {body}");
        // The answer names the host at most, never the URL's credentials.
        assert!(
            !body.to_string().contains("secret"),
            "{url}: the answer repeats the credentials: {body}"
        );
    }

    // A client with callback_hosts: only those hosts and names under them.
    let as_hooks = |url: &str| {
        let body = template_to("+16505550101", url).to_string().into_bytes();
        let gateway = &gateway;
        async move { gateway.post("/send", Some(KEY_HOOKS), body).await }
    };
    for url in [
        "https://evil.example.com/status",
        "https://hooks.example.com.evil.net/",
        "https://xhooks.example.com/",
        "https://93.184.216.34/",
    ] {
        let (status, body) = as_hooks(url).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "callback_url", "{url}: {body}");
        assert_eq!(body["error"]["code"], "callback_host_not_allowed", "{url}");
    }
    // In a batch, the refused item alone fails.
    let (status, body) = gateway
        .post(
            "/send/batch",
            Some(KEY_ALL),
            json!({"messages": [
                template_to("+16505550102", "https://169.254.169.254/"),
                template_to("+16505550103", "https://hooks.example.com/status"),
            ]})
            .to_string()
            .into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let error = &body["results"][0]["error"];
    assert_eq!(error["code"], "callback_private_address", "{body}");
    assert!(
        error["field"]
            .as_str()
            .is_some_and(|f| f.ends_with("callback_url")),
        "{body}"
    );
    assert_eq!(body["results"][1]["status"], "queued", "{body}");
    assert_eq!(
        gateway.queue_len(0).await,
        1,
        "only the batch's good item is queued"
    );

    // Public https names pass: any host for a client without callback_hosts,
    // the listed hosts for one with them.
    let (status, body) = as_hooks("https://hooks.example.com/status").await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = as_hooks("https://eu.HOOKS.example.com:8443/status?token=t").await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = gateway
        .send(&template_to(
            "+16505550104",
            "https://status.partner.example.net/x",
        ))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(gateway.queue_len(0).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_is_never_called_at_delivery() {
    let subscriber = SignedReceiver::default();
    let subscriber_url = subscriber.start(SUBSCRIBER_SECRET).await;
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        callbacks_toml: HTTP_NO_PRIVATE.to_owned(),
        // A configured subscriber is trusted: it may be on loopback.
        extra_toml: format!(
            "[[subscribers]]\nname = \"crm\"\nurl = \"{subscriber_url}\"\n\
             secret_env = \"CRM_SECRET\"\nevents = [\"statuses\"]\n"
        ),
        extra_env: vec![("CRM_SECRET".into(), SUBSCRIBER_SECRET.into())],
        ..GatewayOptions::default()
    })
    .await;

    // A receiver on the address the name leads to: without the check, the
    // callbacks would reach it.
    let (name, address) = loopback_name_from_etc_hosts().unwrap_or_else(|| {
        eprintln!("no name but localhost maps to loopback in /etc/hosts; using localhost only");
        ("localhost".to_owned(), Ipv4Addr::LOCALHOST)
    });
    let receiver = SignedReceiver::default();
    let listener = TcpListener::bind((address, 0))
        .await
        .expect("bind the callback receiver");
    let port = listener.local_addr().expect("addr").port();
    receiver.serve(listener, KEY_ALL).await;
    let name_url = format!("http://{name}:{port}/events");
    eprintln!("callbacks to {name} ({address}) and localhost");

    let mut refused_hosts = vec!["localhost".to_owned()];
    let mut message_id = None;
    if name != "localhost" {
        // /send cannot know what the name resolves to: it accepts it.
        let (status, body) = gateway.send(&template_to("+16505550200", &name_url)).await;
        assert_eq!(status, 202, "{body}");
        message_id = body["id"].as_str().map(str::to_owned);
        refused_hosts.push(name.clone());
    }
    // A notification stored before the configuration forbade it (`localhost`
    // is refused at /send by name): the worker still refuses it.
    Outbox::new(
        redis::aio::ConnectionManager::new(
            redis::Client::open(gateway.redis.url()).expect("redis url"),
        )
        .await
        .expect("redis answers"),
    )
    .push(&Notification {
        url: format!("http://localhost:{port}/events"),
        signer: "client:all".into(),
        body: r#"{"type":"status","status":"sent"}"#.into(),
    })
    .await
    .expect("pushed");

    // The message itself goes out and Meta's statuses come back.
    if let Some(id) = &message_id {
        gateway
            .wait_for_status(id, "read", Duration::from_secs(30))
            .await;
    }
    // sent, delivered, read for the message, and the pushed one.
    let expected = if message_id.is_some() { 4 } else { 1 };
    let dead = wait_until(
        "the callbacks to be given up on",
        Duration::from_secs(30),
        || async {
            let dead = dead_notifications(&gateway).await;
            (dead.len() >= expected).then_some(dead)
        },
    )
    .await;
    assert_eq!(dead.len(), expected, "{dead:?}");
    for letter in &dead {
        assert_eq!(letter.notification.signer, "client:all");
        assert!(
            letter.last_error.contains("refused")
                && letter.last_error.contains("loopback")
                && refused_hosts
                    .iter()
                    .any(|host| letter.last_error.contains(host.as_str())),
            "{letter:?}"
        );
    }
    let refused = sample(
        &gateway,
        "gateway_notifications_refused_total{reason=\"private_address\"}",
    );
    assert_eq!(refused, expected as f64);

    // The trusted subscriber on loopback got the statuses meanwhile.
    if let Some(id) = &message_id {
        let statuses = wait_until(
            "the statuses at the subscriber",
            Duration::from_secs(30),
            || async {
                let statuses: HashSet<String> = subscriber
                    .bodies()
                    .iter()
                    .filter(|b| b["message_id"] == id.as_str())
                    .filter_map(|b| b["status"].as_str().map(str::to_owned))
                    .collect();
                (statuses.len() >= 3).then_some(statuses)
            },
        )
        .await;
        assert_eq!(
            statuses,
            HashSet::from(["sent".into(), "delivered".into(), "read".into()])
        );
    }
    // Given up on, not waiting to be retried; and nothing reached the receiver.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.bodies().is_empty(), "{:?}", receiver.bodies());
    assert_eq!(receiver.forged(), 0);
    assert_eq!(dead_notifications(&gateway).await.len(), expected);
    assert_eq!(
        sample(
            &gateway,
            "gateway_notification_attempts_failed_total{target=\"client:all\"}"
        ),
        0.0,
        "refusals are not failed attempts"
    );
}

/// Answers every POST with a redirect to `location`, counting them.
async fn redirecting_receiver(location: String) -> (String, Arc<AtomicUsize>) {
    async fn redirect(
        State((location, hits)): State<(String, Arc<AtomicUsize>)>,
    ) -> impl IntoResponse {
        hits.fetch_add(1, Ordering::SeqCst);
        (StatusCode::FOUND, [(header::LOCATION, location)])
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/events", post(redirect))
        .with_state((location, hits.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/events", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    // Where a redirect would lead: it must hear nothing.
    let target = SignedReceiver::default();
    let target_url = target.start(KEY_ALL).await;
    let (redirecting_url, hits) = redirecting_receiver(target_url).await;
    // Private addresses allowed: only the redirect stands in the way.
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        extra_toml: "[notify]\ninitial_backoff_ms = 50\nmax_backoff_ms = 100\n".to_owned(),
        ..GatewayOptions::default()
    })
    .await;
    let (status, body) = gateway
        .send(&template_to("+16505550300", &redirecting_url))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    gateway
        .wait_for_status(&id, "read", Duration::from_secs(30))
        .await;

    // sent, delivered, read: each tried once and given up on.
    let dead = wait_until(
        "the redirected callbacks to be given up on",
        Duration::from_secs(30),
        || async {
            let dead = dead_notifications(&gateway).await;
            (dead.len() >= 3).then_some(dead)
        },
    )
    .await;
    for letter in &dead {
        assert!(
            letter.last_error.contains("HTTP 302")
                && letter.last_error.contains("redirects are not followed"),
            "{letter:?}"
        );
        assert_eq!(letter.attempts, 1, "{letter:?}");
    }
    // Quick retries would have shown by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(dead_notifications(&gateway).await.len(), 3);
    assert!(target.bodies().is_empty(), "{:?}", target.bodies());
    assert_eq!(target.forged(), 0);
}
