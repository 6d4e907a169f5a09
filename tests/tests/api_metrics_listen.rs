//! `api.metrics_listen`: a `gateway api` process serves `/metrics` on that
//! address of its own and no longer on `api.listen` (404 there), where the
//! API goes on as before. Without it, `/metrics` is on `api.listen`.

use std::net::SocketAddr;
use std::time::Duration;

use gateway_tests::{GatewayOptions, TestGateway, wait_until};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn free_address() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("addr")
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_address_when_configured() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..GatewayOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    // Without `metrics_listen` (the in-process api): on `api.listen`.
    let (status, _) = get(&http, &format!("{}/metrics", gateway.api_url)).await;
    assert_eq!(status, 200);

    let listen = free_address();
    let metrics_listen = free_address();
    let mut api = gateway.spawn_api_with_env(
        BINARY,
        listen,
        &[("GATEWAY_API__METRICS_LISTEN", &metrics_listen.to_string())],
    );
    let api_url = format!("http://{listen}");
    let metrics_url = format!("http://{metrics_listen}/metrics");
    wait_until(
        "the api process to answer on both addresses",
        Duration::from_secs(20),
        || async {
            let ready = http.get(format!("{api_url}/healthz")).send().await.ok()?;
            let metrics = http.get(&metrics_url).send().await.ok()?;
            (ready.status().is_success() && metrics.status().is_success()).then_some(())
        },
    )
    .await;

    // The API itself stays on `api.listen`; its answers are counted and
    // shown on the metrics address.
    let (status, _) = get(&http, &format!("{api_url}/readyz")).await;
    assert_eq!(status, 200);
    let (status, body) = get(&http, &metrics_url).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"gateway_http_responses_total{route="/readyz",status="200"} 1"#),
        "{body}"
    );
    // Not on `api.listen` any more, and nothing else on the metrics address.
    let (status, _) = get(&http, &format!("{api_url}/metrics")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&http, &format!("http://{metrics_listen}/healthz")).await;
    assert_eq!(status, 404);

    assert!(
        api.terminate(Duration::from_secs(15)),
        "SIGTERM stops both servers"
    );
}
