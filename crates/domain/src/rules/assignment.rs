//! Which worker should own which sender. Exactly one worker drains a sender
//! at a time (product.md, guarantees 4 and 5); this module says which one
//! each worker should aim for, given the set of live workers. The lease in
//! Redis still decides who actually holds a sender: this only keeps workers
//! from fighting over it and spreads senders evenly.
//!
//! Rendezvous (highest-random-weight) hashing: each (worker, sender) pair
//! gets a weight, and the sender goes to the worker with the highest weight.
//! Every worker computes the same owner from the same set of live workers (in
//! any order), and a worker joining or leaving moves only the senders it gains
//! or loses. The weight is FNV-1a 64 over `worker \0 sender` followed by a
//! MurmurHash3 finaliser (FNV alone mixes the last bytes poorly into the high
//! bits that decide the comparison). It is written out here, not std's
//! `DefaultHasher`, because workers of different builds must agree on it.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The worker that should own `sender`, or `None` if there are no workers.
/// Equal weights (practically never) go to the greater worker name, so the
/// answer never depends on the order of `workers`.
pub fn owner<'a>(sender: &str, workers: &'a [String]) -> Option<&'a str> {
    workers
        .iter()
        .map(|worker| (weight(worker, sender), worker.as_str()))
        .max()
        .map(|(_, worker)| worker)
}

/// The senders (from `senders`) this worker should own.
pub fn owned_by<'a>(worker: &str, senders: &'a [String], workers: &[String]) -> Vec<&'a str> {
    senders
        .iter()
        .map(String::as_str)
        .filter(|sender| owner(sender, workers) == Some(worker))
        .collect()
}

/// The weight of a (worker, sender) pair; stable across processes and builds.
fn weight(worker: &str, sender: &str) -> u64 {
    let bytes = worker
        .as_bytes()
        .iter()
        .chain(&[0])
        .chain(sender.as_bytes());
    finalise(fnv1a(bytes.copied()))
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's `fmix64`: every input bit affects every output bit.
fn finalise(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn weights_are_pinned() {
        // Workers of different builds must agree: a change here reshuffles
        // every sender during a rolling deploy. (Value checked against an
        // independent FNV-1a + fmix64 implementation.)
        assert_eq!(weight("worker-a", "106540352242922"), 0xb1a0_bf10_5b7b_b60c);
    }

    #[test]
    fn no_workers_no_owner() {
        assert_eq!(owner("106540352242922", &[]), None);
        assert!(owned_by("worker-a", &names("s", 3), &[]).is_empty());
    }

    #[test]
    fn every_worker_computes_the_same_owner_in_any_order() {
        let workers = names("worker-", 5);
        let mut reversed = workers.clone();
        reversed.reverse();
        for sender in names("sender-", 50) {
            let first = owner(&sender, &workers);
            assert!(first.is_some());
            assert_eq!(owner(&sender, &workers), first);
            assert_eq!(owner(&sender, &reversed), first);
        }
    }

    #[test]
    fn ten_senders_spread_over_three_workers() {
        let workers = ["worker-a", "worker-b", "worker-c"].map(String::from);
        let senders = names("sender-", 10);
        let mut total = 0;
        for worker in &workers {
            let owned = owned_by(worker, &senders, &workers);
            assert!(!owned.is_empty(), "{worker} owns nothing");
            total += owned.len();
        }
        assert_eq!(total, senders.len(), "each sender has exactly one owner");
    }

    #[test]
    fn a_thousand_senders_spread_evenly_over_four_workers() {
        let workers = names("worker-", 4);
        let senders: Vec<String> = (0..1000).map(|i| format!("1065403522{i:05}")).collect();
        for worker in &workers {
            let share = owned_by(worker, &senders, &workers).len();
            assert!((150..=350).contains(&share), "{worker} owns {share}");
        }
    }

    #[test]
    fn a_joining_worker_only_takes_senders() {
        let before = names("worker-", 3);
        let mut after = before.clone();
        after.push("worker-new".to_string());
        let mut moved = 0;
        for sender in names("sender-", 500) {
            let old = owner(&sender, &before);
            let new = owner(&sender, &after);
            if old != new {
                assert_eq!(new, Some("worker-new"), "{sender}");
                moved += 1;
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn a_leaving_worker_only_gives_up_its_own_senders() {
        let before = names("worker-", 4);
        let after: Vec<String> = before
            .iter()
            .filter(|w| *w != "worker-2")
            .cloned()
            .collect();
        for sender in names("sender-", 500) {
            let old = owner(&sender, &before);
            if old != Some("worker-2") {
                assert_eq!(owner(&sender, &after), old, "{sender}");
            }
        }
    }
}
