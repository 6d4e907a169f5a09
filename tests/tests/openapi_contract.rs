//! The OpenAPI document: `GET /openapi.json` on a running api answers
//! exactly the copy checked in at the repo root (`openapi.json`), and every
//! operation it describes is one the router serves.
//!
//! The document is generated from `crates/api/src/openapi.rs`; after
//! changing the api, regenerate the checked-in copy with
//! `UPDATE_OPENAPI=1 cargo test -p gateway-tests --test openapi_contract`
//! (or `cargo run -q -p gateway-api --example openapi > openapi.json`).
//! Which paths the router serves is listed once, in `gateway_api::ROUTES`;
//! the api's own unit test checks each of them is in the document.

use std::path::PathBuf;

use gateway_tests::{GatewayOptions, KEY_ALL, TestGateway};
use serde_json::Value;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p gateway-tests --test openapi_contract";

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("openapi.json")
}

async fn served_document(gateway: &TestGateway) -> String {
    let response = gateway
        .http
        .get(format!("{}/openapi.json", gateway.api_url))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200, "GET /openapi.json needs no key");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/json");
    response.text().await.expect("the document")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_matches_the_checked_in_file_and_the_router() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let served = served_document(&gateway).await;
    let path = checked_in_path();

    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &served).expect("write openapi.json");
        eprintln!("rewrote {}", path.display());
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != served {
        let first_difference = checked_in
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(served.lines().count()));
        panic!(
            "openapi.json at the repo root differs from the document the api serves \
             (first at line {}); if the api changed on purpose, regenerate it with\n    {REGENERATE}\n\
             and commit the result",
            first_difference + 1
        );
    }

    let document: Value = serde_json::from_str(&served).expect("the document is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for required in [
        "/send",
        "/send/batch",
        "/messages/{id}",
        "/webhook",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(required), "{required} is not described");
    }

    // Every described operation reaches a handler: not the router's empty
    // 404 for an unknown path, nor 405 for a method it does not serve.
    for (path, item) in paths {
        let url = format!(
            "{}{}",
            gateway.api_url,
            path.replace("{id}", "unknown")
                .replace("{recipient}", "%2B16505550000")
        );
        for method in item.as_object().expect("path item").keys() {
            let request = match method.as_str() {
                "get" => gateway.http.get(&url),
                "post" => gateway
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{}"),
                "delete" => gateway.http.delete(&url),
                other => panic!("{path}: unexpected method {other}"),
            };
            let response = request
                .bearer_auth(KEY_ALL)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert!(
                status != 405 && !(status == 404 && body.is_empty()),
                "{} {path} is described in openapi.json but the router does not serve it \
                 (answered {status})",
                method.to_uppercase()
            );
            let operation = &item[method];
            let documented = operation["responses"]
                .as_object()
                .is_some_and(|r| r.contains_key(&status.to_string()));
            assert!(
                documented,
                "{} {path} answered {status}, which its operation does not list",
                method.to_uppercase()
            );
            let needs_key = operation.get("security").is_some();
            let public = [
                "/webhook",
                "/healthz",
                "/readyz",
                "/metrics",
                "/openapi.json",
            ];
            assert_eq!(
                needs_key,
                !public.contains(&path.as_str()),
                "{path}: security as documented in the README"
            );
        }
    }
}
