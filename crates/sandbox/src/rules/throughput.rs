//! Per-number throughput: a token bucket holding at most one second's worth
//! of messages (`capacity = rate`), refilled continuously at `rate` tokens
//! per second rather than in one step each second, so there is no boundary
//! at which a full second's burst can follow another.
//!
//! Outbound sends take a token only if one is there (130429 otherwise).
//! Simulated inbound messages always count, because Meta cannot refuse a
//! user's message: they may run the bucket into debt, at most one second's
//! worth, which the following sends then pay for.

use std::time::Instant;

#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate_per_second: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_second);
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        // A `now` older than `last` (callers racing for the lock) adds nothing
        // and must not move the clock back.
        self.last = self.last.max(now);
    }

    /// Takes one token for an outbound send, if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Counts an inbound message, which is never refused.
    pub(crate) fn take_inbound(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(-self.rate);
    }

    /// Gives back a token taken for a send that a later rule rejected, so a
    /// rejected send uses no quota.
    pub(crate) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_allows_one_seconds_worth_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(80, t0);
        assert_eq!((0..100).filter(|_| bucket.try_take(t0)).count(), 80);
        assert!(!bucket.try_take(t0));
    }

    #[test]
    fn tokens_come_back_continuously_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        while bucket.try_take(t0) {}
        assert!(!bucket.try_take(t0 + ms(99)));
        assert!(bucket.try_take(t0 + ms(100)));
        assert!(!bucket.try_take(t0 + ms(150)));
        // After a long pause the bucket is full again, not fuller.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.try_take(later)).count(), 10);
    }

    #[test]
    fn a_sender_keeping_every_second_within_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut steady = TokenBucket::new(80, t0);
        for i in 0..800u32 {
            assert!(
                steady.try_take(t0 + Duration::from_secs_f64(f64::from(i) / 80.0)),
                "steady send {i}"
            );
        }
        let mut bursty = TokenBucket::new(80, t0);
        for second in 0..10u64 {
            let at = t0 + Duration::from_secs(second);
            assert_eq!(
                (0..80).filter(|_| bursty.try_take(at)).count(),
                80,
                "second {second}"
            );
        }
    }

    #[test]
    fn inbound_messages_use_the_same_quota_and_may_go_into_bounded_debt() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        for _ in 0..5 {
            bucket.take_inbound(t0);
        }
        assert_eq!((0..10).filter(|_| bucket.try_take(t0)).count(), 5);
        for _ in 0..1_000 {
            bucket.take_inbound(t0);
        }
        // The debt is capped at one second's worth.
        assert!(!bucket.try_take(t0 + ms(990)));
        assert!(bucket.try_take(t0 + ms(1_200)));
    }

    #[test]
    fn refund_returns_a_token_but_never_overfills() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        bucket.refund();
        assert!(bucket.try_take(t0));
        bucket.refund();
        bucket.refund();
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
    }

    #[test]
    fn a_rate_of_zero_refuses_everything() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!(!bucket.try_take(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_secs(5)));
        assert!(!bucket.try_take(t0 + ms(999)));
        assert!(bucket.try_take(t0 + ms(1_000)));
    }
}
