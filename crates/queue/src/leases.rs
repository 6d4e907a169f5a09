//! Sender ownership in Redis: the registry of live workers, one lease per
//! sender, the send log a worker leaves when it hands a sender over, and
//! the paused flag. The decisions (who should own what, when to stop
//! sending) live in the worker; this module only reads and writes keys.

use redis::Value;

use crate::{Delivery, Queue, QueueError, keys, scripts};

/// A worker's retry state for a message it claimed from another consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryState {
    pub attempts: u32,
    pub next_attempt_ms: Option<i64>,
    pub fallback_used: bool,
}

impl Queue {
    /// Records this worker as alive, forgets workers silent for longer than
    /// `ttl_ms`, and returns the live workers.
    pub async fn heartbeat(
        &self,
        worker: &str,
        now_ms: i64,
        ttl_ms: u64,
    ) -> Result<Vec<String>, QueueError> {
        let cutoff = now_ms - i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let (live,): (Vec<String>,) = redis::pipe()
            .cmd("ZADD")
            .arg(keys::WORKERS)
            .arg(now_ms)
            .arg(worker)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(keys::WORKERS)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .ignore()
            .cmd("ZRANGE")
            .arg(keys::WORKERS)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(live)
    }

    /// Takes this worker out of the registry (a clean stop).
    pub async fn leave(&self, worker: &str) -> Result<(), QueueError> {
        let _: i64 = redis::cmd("ZREM")
            .arg(keys::WORKERS)
            .arg(worker)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Takes the sender's lease if nobody holds it. Returns whether it did,
    /// and the send log its previous owner left, if any.
    pub async fn acquire_lease(
        &self,
        phone_number_id: &str,
        worker: &str,
        ttl_ms: u64,
    ) -> Result<Option<Option<String>>, QueueError> {
        let (acquired, log): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(keys::lease(phone_number_id))
            .arg(worker)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .cmd("GET")
            .arg(keys::send_log(phone_number_id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(acquired.map(|_| log))
    }

    /// Renews the leases this worker holds, in one pipeline; for each sender,
    /// whether it still holds the lease.
    pub async fn renew_leases(
        &self,
        phone_number_ids: &[&str],
        worker: &str,
        ttl_ms: u64,
    ) -> Result<Vec<bool>, QueueError> {
        if phone_number_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for pnid in phone_number_ids {
            pipe.invoke_script(
                scripts::RENEW_LEASE
                    .key(keys::lease(pnid))
                    .arg(worker)
                    .arg(ttl_ms),
            );
        }
        let renewed: Vec<i64> = match pipe.query_async(&mut self.conn.clone()).await {
            Ok(renewed) => renewed,
            // After a Redis restart the script cache is empty; load it and try once more.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = scripts::RENEW_LEASE
                    .prepare_invoke()
                    .load_async(&mut self.conn.clone())
                    .await?;
                pipe.query_async(&mut self.conn.clone()).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(renewed.into_iter().map(|r| r == 1).collect())
    }

    /// Hands the sender over: leaves `send_log` (recent send times) for the
    /// next owner and frees the lease, if this worker still holds it.
    pub async fn release_lease(
        &self,
        phone_number_id: &str,
        worker: &str,
        send_log: &str,
    ) -> Result<(), QueueError> {
        let _: i64 = scripts::RELEASE_LEASE
            .key(keys::lease(phone_number_id))
            .key(keys::send_log(phone_number_id))
            .arg(worker)
            .arg(send_log)
            .arg(5_000)
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

    /// Recipients the sender messaged since `since_ms`, with the time of
    /// the last message to each.
    pub async fn recent_recipients(
        &self,
        phone_number_id: &str,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>, QueueError> {
        let recent: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::recent_recipients(phone_number_id))
            .arg(since_ms)
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(recent)
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

    /// Claims every pending entry of the sender's group for this consumer,
    /// starting at `cursor` ("0-0" first); returns the next cursor ("0-0"
    /// when done) and the entries. Only the lease holder calls this, so the
    /// entries' previous consumer is gone.
    pub async fn claim_pending(
        &self,
        phone_number_id: &str,
        lane: gateway_domain::Lane,
        consumer: &str,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Result<Delivery, String>>), QueueError> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(keys::stream(phone_number_id, lane))
            .arg(keys::CONSUMER_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        let Value::Array(parts) = reply else {
            return Err(QueueError::Protocol("XAUTOCLAIM reply".into()));
        };
        let mut parts = parts.into_iter();
        let next: String = parts
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| QueueError::Protocol(e.to_string()))?
            .unwrap_or_else(|| "0-0".into());
        let entries: redis::streams::StreamRangeReply = parts
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| QueueError::Protocol(e.to_string()))?
            .unwrap_or_default();
        let deliveries = entries
            .ids
            .into_iter()
            .map(|entry| Delivery::from_entry(phone_number_id, lane, entry))
            .collect();
        Ok((next, deliveries))
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
