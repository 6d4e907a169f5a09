//! The per-recipient pair limit: at most `burst` messages per `interval` to
//! one recipient, sustained one per `interval` (Meta: one every 6 s).
//!
//! A GCRA per recipient (the algorithm governor's keyed limiters use),
//! written out because the sender's state machine passes `now` in: a
//! limiter that reads its own clock could not be tested in virtual time.
//! Semantics: a recipient's theoretical arrival time `tat` starts in the
//! past; a message at `t` is allowed when `t >= tat - (burst - 1) *
//! interval`, and then `tat = max(tat, t) + interval`. So `burst` messages
//! may go at once, and after that one per `interval`.
//!
//! A recipient is remembered by a 64-bit hash of its id rather than the
//! id: a sender messaging thousands of recipients a second remembers each
//! for the whole interval, and a hash takes a third of the memory with no
//! allocation. Two recipients whose hashes collide (about one pair in
//! 10^19) would only be paced together, never above the limit.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct PairLimiter {
    interval: Duration,
    /// `(burst - 1) * interval`: how far `tat` may run ahead of now.
    tolerance: Duration,
    tat: HashMap<u64, Instant>,
}

/// One message's place in its recipient's limit, as taken: enough to give
/// it back exactly (see [`PairLimiter::give_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSlot {
    key: u64,
    before: Option<Instant>,
    after: Instant,
}

fn key(recipient: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    recipient.hash(&mut hasher);
    hasher.finish()
}

impl PairLimiter {
    /// `burst` below 1 counts as 1.
    pub fn new(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            tat: HashMap::new(),
        }
    }

    /// When a message to `recipient` may go: `now` if it may now.
    pub fn next_allowed(&self, recipient: &str, now: Instant) -> Instant {
        self.allowed_at(key(recipient), now)
    }

    fn allowed_at(&self, key: u64, now: Instant) -> Instant {
        match self.tat.get(&key) {
            Some(tat) => tat
                .checked_sub(self.tolerance)
                .map_or(now, |allowed| allowed.max(now)),
            None => now,
        }
    }

    /// Records a message to `recipient` at `now` if one may go, else
    /// `Err(when one may)`.
    pub fn try_acquire(&mut self, recipient: &str, now: Instant) -> Result<PairSlot, Instant> {
        let key = key(recipient);
        let allowed = self.allowed_at(key, now);
        if allowed > now {
            return Err(allowed);
        }
        let before = self.tat.get(&key).copied();
        let after = before.map_or(now, |tat| tat.max(now)) + self.interval;
        self.tat.insert(key, after);
        Ok(PairSlot { key, before, after })
    }

    /// Gives back a slot whose message did not reach Meta after all (the
    /// attempt ended before its call): the recipient's limit is as if it
    /// had never been taken. If the recipient was messaged (or seeded)
    /// since, the slot stays taken: stricter than the truth, never looser.
    pub fn give_back(&mut self, slot: PairSlot) {
        if self.tat.get(&slot.key) != Some(&slot.after) {
            return;
        }
        match slot.before {
            Some(before) => self.tat.insert(slot.key, before),
            None => self.tat.remove(&slot.key),
        };
    }

    /// Counts `recipient` as messaged at `at` (a previous owner did), so a
    /// handover never resets anyone's limit.
    pub fn seed(&mut self, recipient: &str, at: Instant) {
        let tat = at + self.interval;
        let entry = self.tat.entry(key(recipient)).or_insert(tat);
        *entry = (*entry).max(tat);
    }

    /// Forgets recipients whose limit has fully recovered by `now`: they
    /// would be allowed a whole burst again anyway.
    pub fn forget_recovered(&mut self, now: Instant) {
        self.tat.retain(|_, tat| *tat > now);
        if self.tat.capacity() > 4 * self.tat.len().max(16) {
            self.tat.shrink_to_fit();
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Messages that may go to one recipient at once.
    pub fn burst(&self) -> u32 {
        u32::try_from(self.tolerance.as_nanos() / self.interval.as_nanos().max(1))
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Recipients remembered.
    pub fn len(&self) -> usize {
        self.tat.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tat.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIX: Duration = Duration::from_secs(6);

    #[test]
    fn one_message_per_interval_when_the_burst_is_one() {
        let t0 = Instant::now();
        let mut pairs = PairLimiter::new(SIX, 1);
        assert!(pairs.try_acquire("a", t0).is_ok());
        assert_eq!(pairs.try_acquire("a", t0), Err(t0 + SIX));
        assert!(
            pairs.try_acquire("b", t0).is_ok(),
            "another recipient is not held up"
        );
        assert_eq!(
            pairs.try_acquire("a", t0 + SIX - Duration::from_millis(1)),
            Err(t0 + SIX)
        );
        assert!(pairs.try_acquire("a", t0 + SIX).is_ok());
        assert_eq!(pairs.next_allowed("a", t0 + SIX), t0 + 2 * SIX);
    }

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut pairs = PairLimiter::new(SIX, 3);
        assert_eq!(pairs.burst(), 3);
        for _ in 0..3 {
            assert!(pairs.try_acquire("a", t0).is_ok());
        }
        assert_eq!(pairs.try_acquire("a", t0), Err(t0 + SIX));
        assert!(pairs.try_acquire("a", t0 + SIX).is_ok());
        assert!(pairs.try_acquire("a", t0 + SIX).is_err());
    }

    #[test]
    fn a_seeded_recipient_waits_and_recovered_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut pairs = PairLimiter::new(SIX, 1);
        pairs.seed("a", t0);
        assert_eq!(pairs.next_allowed("a", t0), t0 + SIX);
        pairs.try_acquire("b", t0).expect("b");
        pairs.forget_recovered(t0 + SIX);
        assert!(pairs.is_empty());
        assert!(pairs.try_acquire("a", t0 + SIX).is_ok());
    }

    #[test]
    fn a_slot_given_back_is_as_if_never_taken_unless_taken_again_since() {
        let t0 = Instant::now();
        let mut pairs = PairLimiter::new(SIX, 1);
        let first = pairs.try_acquire("a", t0).expect("first");
        pairs.give_back(first);
        assert_eq!(pairs.next_allowed("a", t0), t0, "free again at once");
        assert!(pairs.is_empty());

        // A recipient messaged before: back to that message's limit.
        pairs.try_acquire("a", t0).expect("sent");
        let held = pairs
            .try_acquire("a", t0 + SIX)
            .expect("held before its call");
        pairs.give_back(held);
        assert_eq!(pairs.next_allowed("a", t0 + SIX), t0 + SIX);

        // Taken again after the slot (or seeded): the later one stands.
        let late = pairs.try_acquire("a", t0 + SIX).expect("late");
        pairs.seed("a", t0 + 2 * SIX);
        pairs.give_back(late);
        assert_eq!(pairs.next_allowed("a", t0 + SIX), t0 + 3 * SIX);
    }
}
