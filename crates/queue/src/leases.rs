//! Sender ownership in Redis: one lease per sender, the send log a worker
//! leaves when it hands a sender over, and the paused flag. The decisions
//! (who should own what, when to stop sending) live in the worker; this
//! module only reads and writes keys.
//!
//! A lease names its worker and lasts as long as that worker's liveness key
//! covering it (see [`crate::liveness`]): another worker takes a lease only
//! once it is free or that key is gone.

use std::time::Duration;

use crate::{Delivery, Queue, QueueError, keys, scripts};

/// How long a handed-over sender's recent send times are kept for its next
/// owner: the rate window needs the last second of them.
const SEND_LOG_TTL_MS: u64 = 5_000;

/// A worker's retry state for a message it claimed from another consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryState {
    pub attempts: u32,
    pub next_attempt_ms: Option<i64>,
    pub fallback_used: bool,
}

impl Queue {
    /// Takes the sender's lease if nobody holds it, or its holder is gone
    /// (its liveness key expired). Returns whether it did, and the sends
    /// its previous owner left when it handed the sender over, as how long
    /// ago each was (`None`: no handover, the previous owner died).
    pub async fn acquire_lease(
        &self,
        phone_number_id: &str,
        worker: &str,
    ) -> Result<Option<Option<Vec<Duration>>>, QueueError> {
        let mut gone = String::new();
        let range = self.liveness_range(phone_number_id);
        loop {
            // {1, log, Redis ms} when taken, {0, holder} when not.
            let reply: Vec<redis::Value> = scripts::AcquireLease {
                lease_key: keys::lease(phone_number_id).into(),
                send_log_key: keys::send_log(phone_number_id).into(),
                worker: worker.into(),
                gone_holder: (&gone).into(),
            }
            .invocation()
            .invoke_async(&mut self.conn.clone())
            .await?;
            let mut reply = reply.into_iter();
            let mut next = || -> Result<Option<String>, QueueError> {
                redis::from_redis_value(reply.next().unwrap_or(redis::Value::Nil))
                    .map_err(|e| QueueError::Protocol(e.to_string()))
            };
            let taken = next()?.is_some_and(|t| t == "1");
            let value = next()?;
            if taken {
                let now_ms: i64 = next()?.and_then(|ms| ms.parse().ok()).unwrap_or_default();
                return Ok(Some(value.map(|log| sends_ago(&log, now_ms))));
            }
            let Some(holder) = value else {
                return Ok(None);
            };
            if holder == gone || self.is_alive(&holder, range).await? {
                return Ok(None);
            }
            // The holder is gone for good: its name is never alive again,
            // so taking the lease from exactly it is safe.
            gone = holder;
        }
    }

    /// Hands the sender over: leaves its recent sends (how long ago each
    /// was) for the next owner and frees the lease, if this worker still
    /// holds it.
    pub async fn release_lease(
        &self,
        phone_number_id: &str,
        worker: &str,
        sends_ago: &[Duration],
    ) -> Result<(), QueueError> {
        let log: Vec<String> = sends_ago
            .iter()
            .map(|ago| ago.as_millis().to_string())
            .collect();
        let _: i64 = scripts::ReleaseLease {
            lease_key: keys::lease(phone_number_id).into(),
            send_log_key: keys::send_log(phone_number_id).into(),
            worker: worker.into(),
            sends: log.join(",").into(),
            send_log_ttl_ms: SEND_LOG_TTL_MS.into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        Ok(())
    }

    /// Who holds each sender's lease, and why each sender is paused.
    pub async fn sender_states(
        &self,
        phone_number_ids: &[&str],
    ) -> Result<Vec<(Option<String>, Option<String>)>, QueueError> {
        if phone_number_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for pnid in phone_number_ids {
            pipe.cmd("GET")
                .arg(keys::lease(pnid))
                .cmd("GET")
                .arg(keys::paused(pnid));
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(values
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair.get(1).cloned().flatten()))
            .collect())
    }

    /// Recipients the sender messaged within `within`, with how long ago
    /// the last message to each was. Measured on Redis's clock (the record
    /// scripts stamp with it too), so no host's wall clock matters.
    pub async fn recent_recipients(
        &self,
        phone_number_id: &str,
        within: Duration,
    ) -> Result<Vec<(String, Duration)>, QueueError> {
        let (seconds, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await?;
        let now_ms = seconds * 1_000 + micros / 1_000;
        let within_ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        // Only those inside the window: the set keeps longer (see
        // `keys::RECENT_RECIPIENTS_MS`), which at a high rate is many more.
        let recent: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(keys::recent_recipients(phone_number_id))
            .arg(now_ms.saturating_sub(within_ms))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(recent
            .into_iter()
            .map(|(recipient, at_ms)| {
                let ago = Duration::from_millis(u64::try_from(now_ms - at_ms).unwrap_or(0));
                (recipient, ago)
            })
            .collect())
    }

    /// Pauses a sender: its queue is kept, nothing is sent until it is resumed.
    pub async fn pause_sender(
        &self,
        phone_number_id: &str,
        reason_json: &str,
    ) -> Result<(), QueueError> {
        let _: () = redis::cmd("SET")
            .arg(keys::paused(phone_number_id))
            .arg(reason_json)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Resumes a paused sender. Returns whether it was paused.
    pub async fn resume_sender(&self, phone_number_id: &str) -> Result<bool, QueueError> {
        let removed: i64 = redis::cmd("DEL")
            .arg(keys::paused(phone_number_id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(removed == 1)
    }

    /// The retry state recorded for messages a worker picks up again.
    pub async fn retry_states(
        &self,
        phone_number_id: &str,
        deliveries: &[&Delivery],
    ) -> Result<Vec<RetryState>, QueueError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for delivery in deliveries {
            pipe.cmd("HMGET")
                .arg(keys::record(phone_number_id, delivery.message_id.as_str()))
                .arg("attempts")
                .arg("next_attempt_ms")
                .arg("fallback_used");
        }
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
            pipe.query_async(&mut self.conn.clone()).await?;
        Ok(rows
            .into_iter()
            .map(|(attempts, next, fallback)| RetryState {
                attempts: attempts.and_then(|a| a.parse().ok()).unwrap_or(0),
                next_attempt_ms: next.and_then(|n| n.parse().ok()),
                fallback_used: fallback.is_some_and(|f| f == "1"),
            })
            .collect())
    }
}

/// A send log as `release_lease.lua` left it (`<Redis ms>|<ago>,<ago>,...`),
/// read at Redis time `now_ms`: how long ago each send was. Malformed parts
/// are left out.
fn sends_ago(log: &str, now_ms: i64) -> Vec<Duration> {
    let Some((left_ms, agos)) = log.split_once('|') else {
        return Vec::new();
    };
    let since_left = u64::try_from(now_ms - left_ms.parse::<i64>().unwrap_or(now_ms)).unwrap_or(0);
    agos.split(',')
        .filter_map(|ago| ago.trim().parse::<u64>().ok())
        .map(|ago| Duration::from_millis(ago + since_left))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_log_is_read_against_redis_time() {
        let ago = sends_ago("1000|0,250,junk,900", 1_100);
        assert_eq!(
            ago,
            [100, 350, 1_000].map(Duration::from_millis),
            "each send 100 ms older than when it was left"
        );
        assert!(sends_ago("no separator", 5).is_empty());
    }
}
