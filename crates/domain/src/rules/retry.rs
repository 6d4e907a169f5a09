//! What happens to a message after a failed send. Owns the retry policy: for
//! each [`ErrorClass`] whether the message is retried (and after how long),
//! resent as the fallback template, failed, or held while its sender pauses.
//!
//! Guarantees (product.md, guarantee 7): retries are bounded by attempts and
//! by age; permanent errors fail at once; sender-level errors never fail or
//! retry the message, they keep it queued; every delay is bounded. The policy
//! only decides: the worker stores the due time and applies the decision.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::error_class::ErrorClass;

/// The reasons [`RetryDecision::Fail`] carries: stable snake_case strings,
/// stored with dead-lettered messages and used as metric labels.
pub mod fail_reason {
    /// The error can never succeed for this message (or is unknown).
    pub const PERMANENT_ERROR: &str = "permanent_error";
    /// The message used up its attempts.
    pub const ATTEMPTS_EXHAUSTED: &str = "attempts_exhausted";
    /// The message is older than the policy's `max_age`.
    pub const TOO_OLD: &str = "too_old";
    /// The recipient's window is closed and there is no fallback template left.
    pub const WINDOW_CLOSED: &str = "window_closed";
}

/// Longest delay any computation here produces. Far beyond a sensible retry,
/// and small enough that backon's `f32` arithmetic cannot overflow a `Duration`.
const DELAY_CEILING: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Retries beyond this many get the same (capped) backoff: 64 doublings take
/// even 1 ns past [`DELAY_CEILING`], and the bound keeps the computation O(1)
/// for any attempt number.
const MAX_BACKOFF_STEPS: u32 = 64;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Sends tried per message, the first included (default 8).
    pub max_attempts: u32,
    /// A message older than this (since accepted) is not retried (default 24 h).
    pub max_age: Duration,
    /// Shortest transient backoff (default 1 s).
    pub min_delay: Duration,
    /// Longest transient backoff and pair-limit delay (default 5 min).
    pub max_delay: Duration,
    /// Wait after 130429, for the whole sender (default 2 s).
    pub throughput_delay: Duration,
    /// Wait after 131057, for the whole sender (default 30 s).
    pub maintenance_delay: Duration,
    /// Wait after 4, 80007, 80008 (default 5 min).
    pub call_quota_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 60 * 60),
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5 * 60),
            throughput_delay: Duration::from_secs(2),
            maintenance_delay: Duration::from_secs(30),
            call_quota_delay: Duration::from_secs(5 * 60),
        }
    }
}

/// What the worker does next with a message after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Try again after `delay`; `sender_backoff` says the whole sender must
    /// also wait that long (130429, 131057).
    RetryAfter {
        delay: Duration,
        sender_backoff: bool,
    },
    /// Resend now as the fallback template (131047), at most once per message.
    UseFallback,
    /// Stop: the message fails with this reason (one of [`fail_reason`]).
    Fail { reason: &'static str },
    /// Keep the message queued and pause its sender (sender-level and quality errors).
    PauseSender,
}

/// A failed send, as far as its verdict depends on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failure {
    pub class: ErrorClass,
    /// Sends tried for the message, the failed one included.
    pub attempts: u32,
    /// Since the message was accepted.
    pub age: Duration,
    /// A fallback template exists and was not used yet.
    pub fallback_available: bool,
    /// Until the message's `expires_at`, if it has one.
    pub expires_in: Option<Duration>,
    /// Meta reported the failure by webhook after accepting the message,
    /// rather than in its answer to the call.
    pub reported_later: bool,
}

/// What becomes of a message after a failed send: decided once, in
/// [`RetryPolicy::judge`], for a failure in Meta's answer and for one it
/// reports later alike.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Try again after `delay`; with `sender_backoff` the whole sender waits.
    Retry {
        delay: Duration,
        sender_backoff: bool,
    },
    /// Resend now as the fallback template.
    Fallback,
    /// The message fails for good (one of [`fail_reason`]).
    Fail { reason: &'static str },
    /// The next attempt would come after the message's `expires_at`.
    Expire,
    /// Keep the message and pause its sender.
    PauseSender,
}

impl RetryPolicy {
    /// The verdict on a failed send: [`decide`](Self::decide), then what
    /// the message's deadline and the moment of the report change. A retry
    /// that would come too late expires the message (an OTP that arrives
    /// late is worse than none); a sender-level error Meta reports after
    /// accepting the message fails only that message, since the sender's
    /// token and number were evidently fine.
    pub fn judge(&self, failure: &Failure) -> Verdict {
        let decision = self.decide(
            failure.class,
            failure.attempts,
            failure.age,
            failure.fallback_available,
        );
        match decision {
            RetryDecision::RetryAfter { delay, .. }
                if failure.expires_in.is_some_and(|left| delay >= left) =>
            {
                Verdict::Expire
            }
            RetryDecision::RetryAfter {
                delay,
                sender_backoff,
            } => Verdict::Retry {
                delay,
                sender_backoff,
            },
            RetryDecision::UseFallback => Verdict::Fallback,
            RetryDecision::Fail { reason } => Verdict::Fail { reason },
            RetryDecision::PauseSender if failure.reported_later => Verdict::Fail {
                reason: fail_reason::PERMANENT_ERROR,
            },
            RetryDecision::PauseSender => Verdict::PauseSender,
        }
    }

    /// `attempts` = sends already tried for this message (≥ 1; 0 counts as
    /// 1); `age` = time since accepted; `fallback_available` = a fallback
    /// template exists and was not used yet.
    ///
    /// Retryable classes retry while `attempts < max_attempts` and
    /// `age < max_age` (attempts are checked first). A pair-limit delay uses
    /// `attempts` as its n: the retries of one message all go to the same
    /// recipient, and counting other failures too only waits longer, which
    /// is the safe side. A worker that counts consecutive 131056 itself can
    /// call [`RetryPolicy::pair_delay`] with that count instead.
    pub fn decide(
        &self,
        class: ErrorClass,
        attempts: u32,
        age: Duration,
        fallback_available: bool,
    ) -> RetryDecision {
        use ErrorClass::*;
        let retry_after = |delay, sender_backoff| RetryDecision::RetryAfter {
            delay,
            sender_backoff,
        };
        let fail = |reason| RetryDecision::Fail { reason };

        match class {
            WindowClosed if fallback_available => RetryDecision::UseFallback,
            WindowClosed => fail(fail_reason::WINDOW_CLOSED),
            SenderLevel | Quality => RetryDecision::PauseSender,
            RecipientPermanent | RequestPermanent | TemplateUnusable | MarketingSuppressed
            | Unknown => fail(fail_reason::PERMANENT_ERROR),
            SenderThroughput | PairLimit | Maintenance | Transient | CallQuota => {
                if attempts >= self.max_attempts {
                    fail(fail_reason::ATTEMPTS_EXHAUSTED)
                } else if age >= self.max_age {
                    fail(fail_reason::TOO_OLD)
                } else {
                    match class {
                        SenderThroughput => retry_after(self.throughput_delay, true),
                        // 131057 is about the number, not the message: every
                        // other message of the sender would fail the same way.
                        Maintenance => retry_after(self.maintenance_delay, true),
                        PairLimit => retry_after(self.pair_delay(attempts), false),
                        CallQuota => retry_after(self.call_quota_delay, false),
                        _ => retry_after(self.backoff(attempts), false),
                    }
                }
            }
        }
    }

    /// Exponential backoff with jitter for the n-th retry (n ≥ 1; 0 counts
    /// as 1), always within `[min_delay, max_delay]`.
    ///
    /// Computed with backon's `ExponentialBuilder` (factor 2, jitter on).
    /// backon's jitter is additive, not "full": it returns `d + d·r` with `r`
    /// uniform in `[0, 1)`, so a delay lands in `[d, 2d)`. To stay under
    /// `max_delay` the exponential part `d` is capped at `max_delay / 2`,
    /// which makes this "equal jitter" and keeps retries spread out even at
    /// the cap. With `lo = min_delay` and `hi = max_delay`:
    ///
    /// `delay(n) ∈ [min(lo·2^(n-1), hi/2), min(lo·2^n, hi)]`, clamped into `[lo, hi]`
    ///
    /// (defaults: 1–2 s, 2–4 s, 4–8 s, …, then 150–300 s from the 9th retry).
    /// A `min_delay` above `max_delay` is lowered to it; both are capped at a year.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let hi = self.max_delay.min(DELAY_CEILING);
        let lo = self.min_delay.min(hi);
        let base_cap = (hi / 2).max(lo);
        let steps = attempt.clamp(1, MAX_BACKOFF_STEPS);
        let delay = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_jitter()
            .with_min_delay(lo)
            .with_max_delay(base_cap)
            .with_max_times(steps as usize)
            .build()
            .last()
            .unwrap_or(hi);
        // backon's f32 arithmetic may round a hair past either end.
        delay.clamp(lo, hi)
    }

    /// Pair-limit delay as Meta suggests: 4^(n-1) seconds for the n-th
    /// consecutive 131056 of a message (1, 4, 16, 64, ...; 0 counts as 1),
    /// capped at `max_delay`.
    pub fn pair_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        4u64.checked_pow(exponent)
            .map_or(self.max_delay, Duration::from_secs)
            .min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn retry(delay: Duration, sender_backoff: bool) -> RetryDecision {
        RetryDecision::RetryAfter {
            delay,
            sender_backoff,
        }
    }

    fn fail(reason: &'static str) -> RetryDecision {
        RetryDecision::Fail { reason }
    }

    #[test]
    fn decision_for_every_class_on_a_young_message() {
        let policy = RetryPolicy::default();
        let cases = [
            (SenderThroughput, retry(2 * SECOND, true)),
            (PairLimit, retry(4 * SECOND, false)), // second attempt: 4^1 s
            (Maintenance, retry(30 * SECOND, true)),
            (CallQuota, retry(300 * SECOND, false)),
            (WindowClosed, RetryDecision::UseFallback),
            (RecipientPermanent, fail("permanent_error")),
            (RequestPermanent, fail("permanent_error")),
            (TemplateUnusable, fail("permanent_error")),
            (MarketingSuppressed, fail("permanent_error")),
            (Unknown, fail("permanent_error")),
            (SenderLevel, RetryDecision::PauseSender),
            (Quality, RetryDecision::PauseSender),
        ];
        for (class, expected) in cases {
            assert_eq!(policy.decide(class, 2, SECOND, true), expected, "{class:?}");
        }
        // Transient: jittered, so only its shape and bounds (2nd retry: 2–4 s).
        match policy.decide(Transient, 2, SECOND, true) {
            RetryDecision::RetryAfter {
                delay,
                sender_backoff: false,
            } => assert!((2 * SECOND..=4 * SECOND).contains(&delay), "{delay:?}"),
            other => panic!("transient: {other:?}"),
        }
    }

    #[test]
    fn retryable_classes_stop_at_max_attempts_then_max_age() {
        let policy = RetryPolicy::default();
        let day = policy.max_age;
        let almost_a_day = day - Duration::from_nanos(1);
        for class in ErrorClass::ALL.into_iter().filter(|c| c.is_retryable()) {
            let retries = |attempts, age| {
                matches!(
                    policy.decide(class, attempts, age, false),
                    RetryDecision::RetryAfter { .. }
                )
            };
            assert!(retries(7, almost_a_day), "{class:?}");
            assert_eq!(
                policy.decide(class, 8, SECOND, false),
                fail("attempts_exhausted")
            );
            assert_eq!(
                policy.decide(class, u32::MAX, SECOND, false),
                fail("attempts_exhausted")
            );
            assert_eq!(policy.decide(class, 1, day, false), fail("too_old"));
            assert_eq!(
                policy.decide(class, 8, day, false),
                fail("attempts_exhausted")
            );
        }
    }

    #[test]
    fn the_verdict_weighs_the_deadline_and_when_meta_reported_it() {
        let policy = RetryPolicy::default();
        let failure = |class, expires_in, reported_later| Failure {
            class,
            attempts: 1,
            age: SECOND,
            fallback_available: true,
            expires_in,
            reported_later,
        };
        assert_eq!(
            policy.judge(&failure(PairLimit, None, false)),
            Verdict::Retry {
                delay: SECOND,
                sender_backoff: false
            }
        );
        assert_eq!(
            policy.judge(&failure(PairLimit, Some(SECOND), false)),
            Verdict::Expire,
            "a retry due at the deadline comes too late"
        );
        assert!(matches!(
            policy.judge(&failure(PairLimit, Some(2 * SECOND), false)),
            Verdict::Retry { .. }
        ));
        assert_eq!(
            policy.judge(&failure(SenderLevel, None, false)),
            Verdict::PauseSender
        );
        assert_eq!(
            policy.judge(&failure(SenderLevel, None, true)),
            Verdict::Fail {
                reason: "permanent_error"
            }
        );
        assert_eq!(
            policy.judge(&failure(WindowClosed, Some(SECOND), true)),
            Verdict::Fallback
        );
        assert_eq!(
            policy.judge(&failure(RecipientPermanent, None, false)),
            Verdict::Fail {
                reason: "permanent_error"
            }
        );
    }

    #[test]
    fn window_closed_falls_back_once() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(WindowClosed, 1, SECOND, true),
            RetryDecision::UseFallback
        );
        assert_eq!(
            policy.decide(WindowClosed, 1, SECOND, false),
            fail("window_closed")
        );
    }

    #[test]
    fn non_retryable_classes_ignore_attempts_and_age() {
        let policy = RetryPolicy::default();
        for class in [SenderLevel, Quality] {
            assert_eq!(
                policy.decide(class, u32::MAX, Duration::MAX, false),
                RetryDecision::PauseSender
            );
        }
        assert_eq!(
            policy.decide(RequestPermanent, 0, Duration::ZERO, false),
            fail("permanent_error")
        );
    }

    #[test]
    fn pair_delay_grows_by_four_up_to_max_delay() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=7).map(|n| policy.pair_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 4, 16, 64, 256, 300, 300]);
        assert_eq!(policy.pair_delay(0), SECOND);
        assert_eq!(policy.pair_delay(33), 300 * SECOND); // 4^32 overflows u64
        assert_eq!(policy.pair_delay(u32::MAX), 300 * SECOND);
    }

    #[test]
    fn backoff_stays_within_documented_bounds() {
        let policy = RetryPolicy::default();
        let (lo, hi) = (policy.min_delay, policy.max_delay);
        for n in 1..=20u32 {
            let floor = lo.saturating_mul(1 << (n - 1)).min(hi / 2).max(lo);
            let ceiling = lo.saturating_mul(1 << n).min(hi);
            for _ in 0..200 {
                let delay = policy.backoff(n);
                assert!(
                    floor <= delay && delay <= ceiling,
                    "n={n}: {delay:?} not in [{floor:?}, {ceiling:?}]"
                );
            }
        }
    }

    #[test]
    fn backoff_is_jittered_also_at_the_cap() {
        let policy = RetryPolicy::default();
        for n in [3, 30] {
            let first = policy.backoff(n);
            assert!(
                (0..100).any(|_| policy.backoff(n) != first),
                "n={n} always {first:?}"
            );
        }
    }

    #[test]
    fn backoff_never_panics_and_respects_odd_policies() {
        let odd = [
            (Duration::ZERO, Duration::ZERO),
            (Duration::ZERO, SECOND),
            (10 * SECOND, SECOND), // min above max
            (Duration::from_nanos(1), Duration::MAX),
            (Duration::MAX, Duration::MAX),
        ];
        for (min_delay, max_delay) in odd {
            let policy = RetryPolicy {
                min_delay,
                max_delay,
                ..RetryPolicy::default()
            };
            let hi = max_delay.min(DELAY_CEILING);
            for n in [0, 1, 2, 40, 64, 65, u32::MAX] {
                let delay = policy.backoff(n);
                assert!(delay <= hi, "{min_delay:?}..{max_delay:?} n={n}: {delay:?}");
                assert!(delay >= min_delay.min(hi));
            }
        }
    }

    #[test]
    fn backoff_zero_counts_as_first_retry() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            assert!((SECOND..=2 * SECOND).contains(&policy.backoff(0)));
        }
    }
}
