//! Signed webhook delivery: the loop that takes due work from the outbox,
//! turns it into POST bodies (statuses of one number batched up to
//! `StatusConfig::batch`), and posts each with `X-Hub-Signature-256:
//! sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the app
//! secret>`.
//!
//! Anything but a 200 is retried with delays doubling from
//! `retry_initial_ms` up to `retry_max_ms`, at most `max_attempts` times in
//! all; retries wait in the outbox, not in a task, so a dead receiver holds
//! no tasks or connections. At most `MAX_IN_FLIGHT` POSTs run at once.
//!
//! A POST carries the `Posted` signals of the answers held for its statuses
//! and fires them after its first attempt (retries hold nothing). When the
//! loop stops, the work still queued is dropped, which releases them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::payload::{self, StatusEvent};
use super::{Post, Posted, Webhooks, Work};
use crate::config::{NumberConfig, WebhookTarget};
use crate::stats::Event;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const MAX_IN_FLIGHT: usize = 32;
/// Most items taken from the outbox per round, so one lock is held briefly.
const TAKE_AT_ONCE: usize = 1_024;
/// How long the loop sleeps when nothing is planned (it is woken earlier
/// by new work).
const IDLE: Duration = Duration::from_secs(3_600);

pub(crate) fn client() -> std::io::Result<reqwest::Client> {
    reqwest::Client::builder()
        // Webhooks go to a receiver the test or demo runs; a proxy from the
        // environment would only get in the way.
        .no_proxy()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()
        .map_err(std::io::Error::other)
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed by `secret`.
pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers webhook work until `shutdown`; unfinished POSTs are abandoned
/// then.
pub(crate) async fn run(
    webhooks: Arc<Webhooks>,
    client: reqwest::Client,
    shutdown: CancellationToken,
) {
    webhooks.delivering.fetch_add(1, Ordering::SeqCst);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    'deliver: loop {
        while tasks.try_join_next().is_some() {}
        let (due, next) = webhooks.outbox.take_due(Instant::now(), TAKE_AT_ONCE);
        let more_due = due.len() == TAKE_AT_ONCE;
        for post in posts(due, webhooks.statuses().batch) {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit,
                () = shutdown.cancelled() => break 'deliver,
            };
            let Ok(permit) = permit else { break 'deliver };
            tasks.spawn(deliver(Arc::clone(&webhooks), client.clone(), post, permit));
        }
        if more_due {
            continue;
        }
        let wake = tokio::time::Instant::from_std(next.unwrap_or_else(|| Instant::now() + IDLE));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {}
            () = webhooks.outbox.woken() => {}
        }
    }
    tasks.shutdown().await;
    // Stop counting first, then drop what is left (abandoned, as `serve`
    // says): an answer held for it goes at once instead of waiting for a
    // POST that will not come (see `Webhooks::report`).
    if webhooks.delivering.fetch_sub(1, Ordering::SeqCst) == 1 {
        webhooks.clear();
    }
}

/// Turns due work into POST bodies: each inbound message and each retry is
/// one POST; statuses of the same number are combined, up to `batch` each.
fn posts(due: Vec<Work>, batch: usize) -> Vec<Post> {
    let batch = batch.max(1);
    let mut posts = Vec::new();
    let mut groups: Vec<(Arc<NumberConfig>, Vec<StatusEvent>, Vec<Posted>)> = Vec::new();
    let new_post = |body, posted| Post {
        body: payload::encode(&body),
        attempts: 0,
        posted,
    };
    for work in due {
        match work {
            Work::Retry(post) => posts.push(post),
            Work::Inbound(message) => {
                posts.push(new_post(payload::inbound(&message), Vec::new()));
            }
            Work::Status(event, signal) => {
                let number = &event.message.number;
                let index = match groups
                    .iter()
                    .position(|(n, _, _)| n.phone_number_id == number.phone_number_id)
                {
                    Some(index) => index,
                    None => {
                        groups.push((Arc::clone(number), Vec::new(), Vec::new()));
                        groups.len() - 1
                    }
                };
                let (number, events, signals) = &mut groups[index];
                events.push(event);
                signals.extend(signal);
                if events.len() >= batch {
                    posts.push(new_post(
                        payload::statuses(number, events),
                        std::mem::take(signals),
                    ));
                    events.clear();
                }
            }
        }
    }
    for (number, events, signals) in groups {
        if !events.is_empty() {
            posts.push(new_post(payload::statuses(&number, &events), signals));
        }
    }
    posts
}

async fn deliver(
    webhooks: Arc<Webhooks>,
    client: reqwest::Client,
    post: Post,
    permit: OwnedSemaphorePermit,
) {
    // A target removed meanwhile means webhooks are off: drop the work.
    let Some(target) = webhooks.target() else {
        return;
    };
    let delivered = post_once(&client, &target, &post.body).await;
    drop(permit);
    // The statuses in it have been posted: the answers held for them may go.
    for posted in post.posted {
        posted.done();
    }
    let attempts = post.attempts.saturating_add(1);
    if delivered {
        webhooks.counters.count(Event::WebhookDelivered);
        return;
    }
    webhooks.counters.count(Event::WebhookAttemptFailed);
    if attempts >= target.max_attempts {
        // Counted rather than logged loudly: a dead receiver under load would
        // flood the log.
        tracing::debug!(url = %target.url, attempts, "webhook abandoned");
        webhooks.counters.count(Event::WebhookAbandoned);
        return;
    }
    let due = super::later(Instant::now(), retry_delay(&target, attempts));
    webhooks.push(
        due,
        Work::Retry(Post {
            body: post.body,
            attempts,
            posted: Vec::new(),
        }),
    );
}

async fn post_once(client: &reqwest::Client, target: &WebhookTarget, body: &Bytes) -> bool {
    let response = client
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(&target.app_secret, body))
        .timeout(Duration::from_millis(target.timeout_ms))
        .body(body.clone())
        .send()
        .await;
    match response {
        Ok(response) => {
            let delivered = response.status() == reqwest::StatusCode::OK;
            // Reading the answer lets the connection be reused.
            let _ = response.bytes().await;
            delivered
        }
        Err(error) => {
            tracing::debug!(url = %target.url, %error, "webhook POST failed");
            false
        }
    }
}

/// Delay before the next attempt after `attempts` failed ones.
fn retry_delay(target: &WebhookTarget, attempts: u32) -> Duration {
    let factor = 1u64
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(
        target
            .retry_initial_ms
            .saturating_mul(factor)
            .min(target.retry_max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::MetaError;
    use crate::user_id::UserId;
    use payload::{Pricing, SentMessage, StatusKind};
    use serde_json::Value;
    use std::time::SystemTime;

    #[test]
    fn signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_delays_double_up_to_the_maximum() {
        let target = WebhookTarget::new("http://x", "s");
        let delays: Vec<_> = [1, 2, 3, 6, 7, 8, 40, 100]
            .iter()
            .map(|&n| retry_delay(&target, n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 32, 60, 60, 60, 60]);
    }

    fn status(number: &str, wamid: &str) -> Work {
        let message = SentMessage {
            number: Arc::new(NumberConfig::new(number, "waba", "t")),
            wamid: wamid.into(),
            user: UserId::Phone("16505551234".into()),
            biz_opaque_callback_data: None,
            pricing: Pricing::for_message(None, true),
            failure: None::<MetaError>,
        };
        Work::Status(
            StatusEvent {
                message: Arc::new(message),
                kind: StatusKind::Sent,
                at: SystemTime::now(),
            },
            None,
        )
    }

    fn ids(post: &Post) -> Vec<String> {
        let body: Value = serde_json::from_slice(&post.body).expect("JSON");
        let value = &body["entry"][0]["changes"][0]["value"];
        let statuses = value["statuses"].as_array().cloned().unwrap_or_default();
        statuses
            .iter()
            .map(|s| format!("{}:{}", value["metadata"]["phone_number_id"], s["id"]))
            .collect()
    }

    #[test]
    fn statuses_are_batched_per_number_up_to_the_batch_size() {
        let due = vec![
            status("1", "a"),
            status("2", "b"),
            status("1", "c"),
            status("1", "d"),
        ];
        let posts = posts(due, 2);
        let all: Vec<_> = posts.iter().map(ids).collect();
        assert_eq!(
            all,
            [
                vec![r#""1":"a""#.to_owned(), r#""1":"c""#.to_owned()],
                vec![r#""1":"d""#.to_owned()],
                vec![r#""2":"b""#.to_owned()]
            ]
        );
        assert_eq!(
            super::posts(vec![status("1", "a"), status("1", "b")], 0).len(),
            2,
            "batch 0 means 1"
        );
    }
}
