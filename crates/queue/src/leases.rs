//! Sender ownership in Redis: the registry of live workers, each worker's
//! liveness key, one lease per sender, the send log a worker leaves when it
//! hands a sender over, and the paused flag. The decisions (who should own
//! what, when to stop sending) live in the worker; this module only reads
//! and writes keys.
//!
//! A lease names its worker and lasts as long as that worker's liveness
//! key (`gw:worker:<id>`, renewed with every heartbeat, `SET XX`, so never
//! recreated once it lapsed). Renewing is one command per worker however
//! many senders it holds; another worker takes a lease only once it is
//! free or its holder's liveness key is gone, and a worker whose renewal
//! fails holds nothing any more.

use crate::{Delivery, Queue, QueueError, keys, scripts};

/// A worker's retry state for a message it claimed from another consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryState {
    pub attempts: u32,
    pub next_attempt_ms: Option<i64>,
    pub fallback_used: bool,
}

impl Queue {
    /// Records this worker as alive for `ttl_ms` more, forgets workers
    /// silent for longer, and returns the live workers. `joining` is the
    /// first heartbeat of this worker's life. `None` when this worker's
    /// liveness had already lapsed: others may have taken its senders, and
    /// it holds no lease any more.
    pub async fn heartbeat(
        &self,
        worker: &str,
        now_ms: i64,
        ttl_ms: u64,
        joining: bool,
    ) -> Result<Option<Vec<String>>, QueueError> {
        let cutoff = now_ms - i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let (alive, live): (Option<String>, Vec<String>) = redis::pipe()
            .cmd("SET")
            .arg(keys::worker(worker))
            .arg(now_ms)
            .arg(if joining { "NX" } else { "XX" })
            .arg("PX")
            .arg(ttl_ms)
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
        Ok(alive.map(|_| live))
    }

    /// Takes this worker out of the registry (a clean stop).
    pub async fn leave(&self, worker: &str) -> Result<(), QueueError> {
        redis::pipe()
            .cmd("ZREM")
            .arg(keys::WORKERS)
            .arg(worker)
            .ignore()
            .cmd("DEL")
            .arg(keys::worker(worker))
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Takes the sender's lease if nobody holds it, or its holder is gone
    /// (its liveness key expired). Returns whether it did, and the send log
    /// its previous owner left, if any.
    pub async fn acquire_lease(
        &self,
        phone_number_id: &str,
        worker: &str,
    ) -> Result<Option<Option<String>>, QueueError> {
        let mut gone = String::new();
        loop {
            let (taken, value): (i64, Option<String>) = scripts::ACQUIRE_LEASE
                .key(keys::lease(phone_number_id))
                .key(keys::send_log(phone_number_id))
                .arg(worker)
                .arg(&gone)
                .invoke_async(&mut self.conn.clone())
                .await?;
            if taken == 1 {
                return Ok(Some(value));
            }
            let Some(holder) = value else {
                return Ok(None);
            };
            if holder == gone || self.worker_alive(&holder).await? {
                return Ok(None);
            }
            // The holder is gone for good: its name is never alive again,
            // so taking the lease from exactly it is safe.
            gone = holder;
        }
    }

    /// Whether `worker`'s liveness key exists.
    pub async fn worker_alive(&self, worker: &str) -> Result<bool, QueueError> {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(keys::worker(worker))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(exists == 1)
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
