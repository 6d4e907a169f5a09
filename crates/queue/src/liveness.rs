//! Workers' liveness and registry. A lease names a worker and holds while
//! that worker's liveness key lives: renewing costs one command per key,
//! however many senders the worker holds. Another worker takes a lease
//! only once its holder's key is gone.
//!
//! On one Redis server a worker has one liveness key. On a Redis Cluster it
//! has one per range of [`SLOTS_PER_RANGE`] hash slots it holds senders in,
//! placed in that range (so on the master that holds those senders' keys):
//! a master that is down then stops only the senders whose keys it holds,
//! while the others' leases are renewed on their own masters. Which key
//! covers a sender follows from its slot alone, so every worker agrees on
//! it whatever it knows of the cluster's layout.
//!
//! A key is renewed with `SET XX` and never recreated once it lapsed:
//! another worker may have taken the leases on the strength of its death.
//! The worker comes back in that range under a new name.
//!
//! The registry (`gw:workers`) lists the live workers, for sharing the
//! senders out; it is not what keeps a lease, so its master being down
//! stops nobody.

use std::sync::LazyLock;

use crate::{Queue, QueueError, keys};

/// Hash slots per liveness range on a cluster: 256 ranges, so a worker
/// renews at most 256 keys, and a range rarely straddles two masters.
pub const SLOTS_PER_RANGE: u16 = 64;

const CLUSTER_SLOTS: u16 = 16_384;
const RANGES: u16 = CLUSTER_SLOTS / SLOTS_PER_RANGE;

/// The part of the keyspace one liveness key covers: the whole of it on one
/// server, [`SLOTS_PER_RANGE`] hash slots on a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LivenessRange(u16);

impl Queue {
    /// The range whose liveness key keeps the sender's lease.
    pub fn liveness_range(&self, phone_number_id: &str) -> LivenessRange {
        if self.conn.is_cluster() {
            LivenessRange(hash_slot(&keys::lease(phone_number_id)) / SLOTS_PER_RANGE)
        } else {
            LivenessRange(0)
        }
    }

    /// Renews `holder`'s liveness key in `range` for `ttl_ms` more, or with
    /// `joining` creates it. `false` when it had lapsed (joining: when it
    /// existed already): that name must not hold leases there any more.
    pub async fn renew_liveness(
        &self,
        holder: &str,
        range: LivenessRange,
        ttl_ms: u64,
        joining: bool,
    ) -> Result<bool, QueueError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.liveness_key(holder, range))
            .arg(1)
            .arg(if joining { "NX" } else { "XX" })
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Whether `holder`'s liveness key in `range` exists.
    pub async fn is_alive(&self, holder: &str, range: LivenessRange) -> Result<bool, QueueError> {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(self.liveness_key(holder, range))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(exists == 1)
    }

    /// Records `worker` in the registry for `ttl_ms` more, forgets workers
    /// silent for longer, and returns the live ones.
    pub async fn register(
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

    /// Takes `worker` out of the registry and deletes its liveness keys,
    /// `(holder, range)` each (a clean stop).
    pub async fn leave(
        &self,
        worker: &str,
        liveness: &[(String, LivenessRange)],
    ) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(keys::WORKERS).arg(worker).ignore();
        for (holder, range) in liveness {
            pipe.cmd("DEL")
                .arg(self.liveness_key(holder, *range))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    fn liveness_key(&self, holder: &str, range: LivenessRange) -> String {
        if self.conn.is_cluster() {
            keys::worker_in(holder, &RANGE_TAGS[usize::from(range.0)])
        } else {
            keys::worker(holder)
        }
    }
}

/// For each range, a hash tag whose slot lies in it: the liveness keys of
/// the range carry it.
static RANGE_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); usize::from(RANGES)];
    let mut missing = tags.len();
    let mut candidate: u32 = 0;
    while missing > 0 {
        let tag = candidate.to_string();
        let range = usize::from(slot_of(tag.as_bytes()) / SLOTS_PER_RANGE);
        if tags[range].is_empty() {
            tags[range] = tag;
            missing -= 1;
        }
        candidate += 1;
    }
    tags
});

/// The Redis Cluster hash slot of `key`: of its hash tag (`{...}`), if it
/// has a non-empty one, else of the whole key.
fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tag = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter()
            .position(|b| *b == b'}')
            .filter(|close| *close > 0)
            .map(|close| &rest[..close])
    });
    slot_of(tag.unwrap_or(bytes))
}

fn slot_of(bytes: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(bytes) % CLUSTER_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_clusters() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"123456789"), 0x31C3);
        assert_eq!(hash_slot("foo"), 12_182);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(hash_slot("foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_eq!(hash_slot("gw:{1000}:lease"), hash_slot("gw:{1000}:queue"));
    }

    #[test]
    fn a_ranges_liveness_key_lies_in_that_range() {
        for range in 0..RANGES {
            let key = keys::worker_in("worker-1", &RANGE_TAGS[usize::from(range)]);
            assert_eq!(hash_slot(&key) / SLOTS_PER_RANGE, range, "{key}");
        }
    }
}
