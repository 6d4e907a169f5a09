//! A service that receives the gateway's signed notifications (a
//! subscriber, or a message's `callback_url`): keeps the bodies whose
//! signature holds with its secret, and counts the others.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use gateway_notify::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use serde_json::Value;
use tokio::net::TcpListener;

#[derive(Clone, Default)]
pub struct SignedReceiver {
    verified: Arc<Mutex<Vec<Value>>>,
    forged: Arc<Mutex<usize>>,
}

impl SignedReceiver {
    /// Serves `POST /events` on `listener`, checking signatures with `secret`.
    pub async fn serve(&self, listener: TcpListener, secret: &'static str) {
        async fn take(
            State((receiver, secret)): State<(SignedReceiver, &'static str)>,
            headers: HeaderMap,
            body: Bytes,
        ) {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let timestamp = header(TIMESTAMP_HEADER).and_then(|t| t.parse().ok());
            let signed = match (timestamp, header(SIGNATURE_HEADER)) {
                (Some(t), Some(s)) => verify(secret.as_bytes(), t, &body, s),
                _ => false,
            };
            match serde_json::from_slice::<Value>(&body) {
                Ok(value) if signed => lock(&receiver.verified).push(value),
                _ => *lock(&receiver.forged) += 1,
            }
        }
        let app = Router::new()
            .route("/events", post(take))
            .with_state((self.clone(), secret));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    /// Serves on a free loopback port; returns its URL.
    pub async fn start(&self, secret: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/events", listener.local_addr().expect("addr"));
        self.serve(listener, secret).await;
        url
    }

    /// The bodies received with a valid signature, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        lock(&self.verified).clone()
    }

    /// How many arrived without a valid signature.
    pub fn forged(&self) -> usize {
        *lock(&self.forged)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
