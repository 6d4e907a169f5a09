//! What admission control reads about a sender: the messages in its two
//! streams, the rate its owner keeps now, and whether it is paused, in one
//! round trip. The owner publishes its rate ([`Queue::publish_rate`]) with
//! a short expiry, so a rate lowered by a 130429 or the throughput tier is
//! seen by every api process, and a sender nobody owns falls back to its
//! configured rate.

use std::time::Duration;

use gateway_domain::rules::admission::SenderLoad;

use crate::{Queue, QueueError, keys};

/// How long a published rate stands without being published again.
pub const PUBLISHED_RATE_TTL: Duration = Duration::from_secs(15);

/// A sender's load as Redis has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReading {
    pub transactional: u64,
    pub bulk: u64,
    /// The rate the owner keeps now; `None` when no owner published one.
    pub published_rate: Option<u32>,
    /// Why the sender is paused (JSON, as stored); `None` when it is not.
    pub paused: Option<String>,
}

impl LoadReading {
    /// The load to judge by: the published rate, else `configured_rate`
    /// (as [`crate::SenderStats::load`]).
    pub fn load(&self, configured_rate: u32) -> SenderLoad {
        load(
            self.transactional,
            self.bulk,
            self.published_rate,
            configured_rate,
        )
    }
}

/// A sender's load: the rate its owner published, else the configured one.
pub(crate) fn load(
    transactional: u64,
    bulk: u64,
    published_rate: Option<u32>,
    configured_rate: u32,
) -> SenderLoad {
    SenderLoad {
        transactional,
        bulk,
        rate: published_rate.unwrap_or(configured_rate),
    }
}

impl Queue {
    /// The sender's load, in one round trip (one hash tag, one slot).
    pub async fn sender_load(&self, phone_number_id: &str) -> Result<LoadReading, QueueError> {
        let (transactional, bulk, rate, paused): (u64, u64, Option<String>, Option<String>) =
            redis::pipe()
                .cmd("XLEN")
                .arg(keys::queue(phone_number_id))
                .cmd("XLEN")
                .arg(keys::bulk(phone_number_id))
                .cmd("GET")
                .arg(keys::sender_rate(phone_number_id))
                .cmd("GET")
                .arg(keys::paused(phone_number_id))
                .query_async(&mut self.conn.clone())
                .await?;
        Ok(LoadReading {
            transactional,
            bulk,
            published_rate: rate.and_then(|r| r.parse().ok()).filter(|&r| r > 0),
            paused,
        })
    }

    /// The sender's owner keeps `rate` now; stands for [`PUBLISHED_RATE_TTL`].
    pub async fn publish_rate(&self, phone_number_id: &str, rate: u32) -> Result<(), QueueError> {
        let ttl_ms = u64::try_from(PUBLISHED_RATE_TTL.as_millis()).unwrap_or(u64::MAX);
        let _: () = redis::cmd("SET")
            .arg(keys::sender_rate(phone_number_id))
            .arg(rate)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
