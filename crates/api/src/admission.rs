//! "Not now" at `/send`, before anything is stored: a paused sender (503
//! `sender_paused`), a line too long for the priority or longer than the
//! message's `expires_at` (429 `queue_full`, the rule in
//! [`gateway_domain::rules::admission`]), and the client's quotas (429
//! `client_rate_limited` / `client_daily_quota`, counted in Redis).
//!
//! A sender's load is read from Redis at most every [`FRESH_FOR`] per api
//! process, and what this process accepted since is added to it, so a
//! burst of requests costs one read and still sees itself. Other api
//! processes' accepts are seen at the next read: the line may pass its
//! limit by what arrives meanwhile, never for long. When the read fails the
//! message is judged on the last load known (or taken): the enqueue that
//! follows answers for Redis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::Lane;
use gateway_domain::rules::admission::{self, SenderLoad};
use gateway_queue::{LoadReading, QuotaLimits, QuotaScope};
use tokio::sync::Mutex;

use crate::auth::Client;
use crate::send_request::SendRequest;
use crate::{ApiError, AppState};

/// How long a sender's load read from Redis is used before it is read again.
const FRESH_FOR: Duration = Duration::from_millis(250);

/// Each sender's last known load, by phone_number_id.
pub(crate) struct Admission {
    senders: HashMap<String, Mutex<Known>>,
}

#[derive(Default)]
struct Known {
    reading: Option<(LoadReading, Instant)>,
    /// Messages this process accepted since `reading`, per stream.
    accepted: [u64; 2],
}

impl Admission {
    pub fn new(senders: &[std::sync::Arc<SenderSettings>]) -> Self {
        Self {
            senders: senders
                .iter()
                .map(|s| (s.phone_number_id.clone(), Mutex::new(Known::default())))
                .collect(),
        }
    }
}

/// Judges `requests` in order: each is admitted or refused as if the ones
/// before it that were admitted had been queued. Admitted ones are counted
/// in the sender's load at once (one that then fails to store is counted
/// until the next read, a quarter second).
pub(crate) async fn judge(
    state: &AppState,
    requests: &[&SendRequest],
) -> Vec<Result<(), ApiError>> {
    let now_ms = crate::send::unix_ms();
    let mut verdicts: Vec<Result<(), ApiError>> = requests.iter().map(|_| Ok(())).collect();
    // A sender at a time, its lock held only while its own requests are
    // judged: two batches naming senders in other orders cannot deadlock.
    let mut senders: Vec<&str> = requests
        .iter()
        .map(|r| r.sender.phone_number_id.as_str())
        .collect();
    senders.sort_unstable();
    senders.dedup();
    for pnid in senders {
        let Some(known) = state.admission.senders.get(pnid) else {
            continue;
        };
        let mut known = known.lock().await;
        let mut refreshed = false;
        for (request, verdict) in requests.iter().zip(verdicts.iter_mut()) {
            if request.sender.phone_number_id != pnid {
                continue;
            }
            if !std::mem::replace(&mut refreshed, true) {
                refresh(state, &request.sender, &mut known).await;
            }
            *verdict = judge_one(&request.sender, request, &mut known, now_ms);
        }
    }
    verdicts
}

fn judge_one(
    sender: &SenderSettings,
    request: &SendRequest,
    known: &mut Known,
    now_ms: i64,
) -> Result<(), ApiError> {
    let Some((reading, _)) = &known.reading else {
        return Ok(());
    };
    if let Some(reason) = &reading.paused {
        return Err(ApiError::SenderPaused {
            sender: sender.name.clone(),
            reason: pause_title(reason),
        });
    }
    let lane = if request.send_after_ms.is_some_and(|after| after > now_ms) {
        Lane::Scheduled
    } else {
        request.lane
    };
    let load = current_load(reading, sender, known.accepted);
    let expires_in = request
        .expires_at_ms
        .map(|at| Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0)));
    admission::admit(&load, lane, sender.max_queue.for_lane(lane), expires_in).map_err(
        |refusal| ApiError::QueueFull {
            sender: sender.name.clone(),
            refusal,
        },
    )?;
    if lane != Lane::Scheduled {
        known.accepted[lane.stream_index()] += 1;
    }
    Ok(())
}

/// The load Redis showed, with what this process accepted since.
fn current_load(reading: &LoadReading, sender: &SenderSettings, accepted: [u64; 2]) -> SenderLoad {
    reading
        .load(sender.rate_per_second)
        .with_queued(Lane::Transactional, accepted[0])
        .with_queued(Lane::Bulk, accepted[1])
}

async fn refresh(state: &AppState, sender: &SenderSettings, known: &mut Known) {
    if known
        .reading
        .as_ref()
        .is_some_and(|(_, at)| at.elapsed() < FRESH_FOR)
    {
        return;
    }
    match state.queue.sender_load(&sender.phone_number_id).await {
        Ok(reading) => {
            known.reading = Some((reading, Instant::now()));
            known.accepted = [0, 0];
        }
        Err(error) => {
            state.metrics.redis_failed("sender_load");
            tracing::debug!(%error, sender = %sender.name, "could not read the sender's load");
        }
    }
}

/// The pause's reason for people: its `title` (and Meta's code) if the
/// stored JSON has them.
fn pause_title(stored: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(stored).ok();
    let title = parsed
        .as_ref()
        .and_then(|v| v.get("title"))
        .and_then(|t| t.as_str());
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(|c| c.as_i64());
    match (title, code) {
        (Some(title), Some(code)) => format!("{title} (Meta error {code})"),
        (Some(title), None) => title.to_owned(),
        _ => "paused by an operator or after a sender-level error".to_owned(),
    }
}

/// Judges `requests` (admission control, then the client's quotas for
/// those admitted) and counts the refusals. A client without quotas costs
/// no Redis call for them; one sender's requests take from the client's
/// quota and that sender's in one call. When a quota covers only some of
/// a batch, the first admitted ones go.
pub(crate) async fn admit(
    state: &AppState,
    client: &Client,
    requests: &[&SendRequest],
) -> Result<Vec<Result<(), ApiError>>, ApiError> {
    let mut verdicts = judge(state, requests).await;
    let overall = QuotaLimits {
        per_second: client.rate_per_second,
        per_day: client.per_day,
    };
    let mut senders: Vec<&str> = Vec::new();
    for (request, verdict) in requests.iter().zip(&verdicts) {
        let pnid = request.sender.phone_number_id.as_str();
        if verdict.is_ok() && !senders.contains(&pnid) {
            senders.push(pnid);
        }
    }
    for pnid in senders {
        let through_sender = client
            .sender_quotas
            .iter()
            .find(|(quota_pnid, _)| quota_pnid == pnid)
            .map(|(_, quota)| QuotaLimits {
                per_second: quota.rate_per_second,
                per_day: quota.per_day,
            })
            .unwrap_or_default();
        let scopes = [
            (QuotaScope::Client, overall),
            (QuotaScope::Sender(pnid), through_sender),
        ];
        let mine = |(request, verdict): &(&&SendRequest, &mut Result<(), ApiError>)| {
            verdict.is_ok() && request.sender.phone_number_id == pnid
        };
        let wanted = requests
            .iter()
            .zip(verdicts.iter_mut())
            .filter(mine)
            .count() as u64;
        let grant = state
            .queue
            .take_client_quota(&client.name, &scopes, wanted, crate::send::unix_ms())
            .await
            .inspect_err(|_| state.metrics.redis_failed("client_quota"))?;
        if let Some((quota, retry_after)) = grant.exceeded {
            for (_, verdict) in requests
                .iter()
                .zip(verdicts.iter_mut())
                .filter(mine)
                .skip(grant.granted as usize)
            {
                *verdict = Err(ApiError::QuotaExceeded { quota, retry_after });
            }
        }
    }
    for refusal in verdicts.iter().filter_map(|v| v.as_ref().err()) {
        state
            .metrics
            .client_refused
            .with_label_values(&[client.name.as_str(), refusal.code()])
            .inc();
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_reads_as_its_title_and_code() {
        assert_eq!(
            pause_title(r#"{"code":190,"title":"Invalid OAuth access token","class":"sender"}"#),
            "Invalid OAuth access token (Meta error 190)"
        );
        assert_eq!(
            pause_title(r#"{"by":"operator","title":"template review"}"#),
            "template review"
        );
        assert_eq!(
            pause_title("not json"),
            "paused by an operator or after a sender-level error"
        );
    }
}
