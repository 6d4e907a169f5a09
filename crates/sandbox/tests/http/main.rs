//! Integration tests: the sandbox served on 127.0.0.1:0, driven over HTTP
//! with reqwest, with a small axum receiver standing in for the gateway's
//! webhook endpoint. One test binary (modules below) keeps link time down.

mod admin;
mod faults;
mod graph_api;
mod held_answers;
mod helpers;
mod media;
mod webhooks;
