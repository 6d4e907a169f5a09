//! The sender's effective rate after Meta says it is too fast (130429). The
//! configured rate is the gateway's estimate of the sender's throughput; a
//! 130429 proves it too high for now (inbound traffic shares the limit, Meta
//! may measure differently), so the rate is halved and then restored step by
//! step while Meta stays quiet.
//!
//! Rules, with `now` supplied by the caller so they are testable in virtual time:
//! - each 130429 halves the current rate (never below 1), but at most once per
//!   `halving_interval` (default 1 s): the other 130429 that arrive meanwhile
//!   answer sends already in flight at the old rate and prove nothing new;
//! - every 130429, halving or not, restarts the quiet period;
//! - each full `recovery_step` (default 10 s) without a 130429 adds 10 % of
//!   the configured rate (at least 1), up to the configured rate.
//!
//! The worker feeds [`AdaptiveRate::current`] into the sender's
//! [`SendWindow`](super::send_window::SendWindow) limit before each send.

use std::time::{Duration, Instant};

const DEFAULT_HALVING_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_RECOVERY_STEP: Duration = Duration::from_secs(10);
/// Each recovery step restores this share of the configured rate.
const RECOVERY_PERCENT: u32 = 10;

/// The sender's effective rate: configured, halved (not below 1) on each
/// 130429, and restored step by step up to the configured rate.
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    configured: u32,
    current: u32,
    halving_interval: Duration,
    recovery_step: Duration,
    /// When the rate was last halved.
    last_halving: Option<Instant>,
    /// Where the next recovery step is counted from (the last 130429 or the
    /// last step); `None` while the rate is the configured one.
    recovery_from: Option<Instant>,
}

impl AdaptiveRate {
    /// A rate below 1 counts as 1.
    pub fn new(configured: u32) -> Self {
        let configured = configured.max(1);
        Self {
            configured,
            current: configured,
            halving_interval: DEFAULT_HALVING_INTERVAL,
            recovery_step: DEFAULT_RECOVERY_STEP,
            last_halving: None,
            recovery_from: None,
        }
    }

    /// At most one halving per `interval` (zero: every 130429 halves).
    pub fn with_halving_interval(mut self, interval: Duration) -> Self {
        self.halving_interval = interval;
        self
    }

    /// One recovery step per `step` without a 130429 (zero: recover at once).
    pub fn with_recovery_step(mut self, step: Duration) -> Self {
        self.recovery_step = step;
        self
    }

    /// Records a 130429 at `now`; returns the new rate.
    pub fn on_throttled(&mut self, now: Instant) -> u32 {
        let current = self.current(now);
        let may_halve = self
            .last_halving
            .is_none_or(|halved| now.saturating_duration_since(halved) >= self.halving_interval);
        if may_halve {
            self.current = (current / 2).max(1);
            self.last_halving = Some(now);
        }
        // A stale `now` must not move the quiet period's start back.
        let quiet_since = self.recovery_from.map_or(now, |from| from.max(now));
        self.recovery_from = Some(quiet_since);
        self.current
    }

    /// The rate at `now`, after the recovery steps due by then.
    pub fn current(&mut self, now: Instant) -> u32 {
        let Some(from) = self.recovery_from else {
            return self.current;
        };
        let quiet = now.saturating_duration_since(from);
        let steps = match self.recovery_step.as_nanos() {
            0 => u128::MAX,
            step => quiet.as_nanos() / step,
        };
        if steps == 0 {
            return self.current;
        }
        let step_size = u64::from(self.configured) * u64::from(RECOVERY_PERCENT);
        let step_size = step_size.div_ceil(100);
        let missing = self.configured.saturating_sub(self.current);
        let gain = steps.saturating_mul(u128::from(step_size));
        if gain >= u128::from(missing) {
            self.current = self.configured;
            self.recovery_from = None;
        } else {
            // gain < missing, so both conversions hold; steps fit in u32 too.
            self.current += u32::try_from(gain).unwrap_or(missing);
            let elapsed = u32::try_from(steps)
                .ok()
                .and_then(|steps| self.recovery_step.checked_mul(steps));
            self.recovery_from = elapsed
                .and_then(|elapsed| from.checked_add(elapsed))
                .or(Some(now));
        }
        self.current
    }

    pub fn configured(&self) -> u32 {
        self.configured
    }

    /// Changes the configured rate (e.g. after a throughput-tier change;
    /// below 1 counts as 1). Unthrottled, the rate follows at once; while
    /// throttled, the current rate is kept (lowered if above the new one)
    /// and recovers towards the new configured rate.
    pub fn set_configured(&mut self, rate: u32) {
        self.configured = rate.max(1);
        self.current = match self.recovery_from {
            None => self.configured,
            Some(_) => self.current.min(self.configured),
        };
        if self.current == self.configured {
            self.recovery_from = None;
        }
    }
}

/// The rate a sender is held to under its number's throughput tier: its
/// configured rate, but never more than the tier allows less an eighth kept
/// for inbound messages, which Meta counts too (80 → 70, 1,000 → 875,
/// 20 → 18). Configure a high `rate_per_second` to follow the tier up.
pub fn tier_capped(configured: u32, tier_limit: Option<u32>) -> u32 {
    match tier_limit {
        Some(limit) => configured.min(limit - limit / 8).max(1),
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        assert_eq!(rate.configured(), 70);
        assert_eq!(rate.current(t0 + secs(100)), 70);
        assert_eq!(AdaptiveRate::new(0).configured(), 1);
    }

    #[test]
    fn a_flurry_of_throttles_halves_once() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        assert_eq!(rate.on_throttled(t0), 35);
        for i in 1..10 {
            assert_eq!(rate.on_throttled(t0 + ms(100 * i)), 35);
        }
        assert_eq!(rate.on_throttled(t0 + secs(1)), 17);
    }

    #[test]
    fn halving_stops_at_one() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        let rates: Vec<u32> = (0..8).map(|i| rate.on_throttled(t0 + secs(i))).collect();
        assert_eq!(rates, [35, 17, 8, 4, 2, 1, 1, 1]);
    }

    #[test]
    fn recovers_ten_percent_per_quiet_step() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        rate.on_throttled(t0);
        assert_eq!(rate.current(t0 + secs(10) - ms(1)), 35);
        assert_eq!(rate.current(t0 + secs(10)), 42);
        assert_eq!(rate.current(t0 + secs(20)), 49);
        assert_eq!(rate.current(t0 + secs(49)), 63);
        assert_eq!(rate.current(t0 + secs(50)), 70);
        assert_eq!(rate.current(t0 + secs(1000)), 70);
    }

    #[test]
    fn steps_are_counted_from_the_throttle_not_from_each_query() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        rate.on_throttled(t0);
        assert_eq!(rate.current(t0 + secs(35)), 56); // three steps at once
        assert_eq!(rate.current(t0 + secs(40)), 63); // the fourth at 40 s, not 45 s
    }

    #[test]
    fn a_throttle_restarts_the_quiet_period() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        rate.on_throttled(t0);
        assert_eq!(rate.current(t0 + secs(15)), 42);
        // Within the halving interval of nothing: halves again.
        assert_eq!(rate.on_throttled(t0 + secs(15)), 21);
        // A late answer right after restarts the clock without halving.
        assert_eq!(rate.on_throttled(t0 + secs(15) + ms(500)), 21);
        assert_eq!(rate.current(t0 + secs(25)), 21);
        assert_eq!(rate.current(t0 + secs(25) + ms(500)), 28);
    }

    #[test]
    fn small_rates_recover_by_at_least_one() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(5);
        assert_eq!(rate.on_throttled(t0), 2);
        assert_eq!(rate.current(t0 + secs(10)), 3);
        assert_eq!(rate.current(t0 + secs(30)), 5);
    }

    #[test]
    fn custom_intervals() {
        let t0 = Instant::now();
        let mut eager = AdaptiveRate::new(80)
            .with_halving_interval(Duration::ZERO)
            .with_recovery_step(secs(1));
        assert_eq!(eager.on_throttled(t0), 40);
        assert_eq!(eager.on_throttled(t0), 20);
        assert_eq!(eager.current(t0 + secs(1)), 28);
        let mut instant = AdaptiveRate::new(80).with_recovery_step(Duration::ZERO);
        assert_eq!(instant.on_throttled(t0), 40);
        assert_eq!(instant.current(t0), 80);
    }

    #[test]
    fn configured_rate_changes() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        rate.set_configured(1000);
        assert_eq!(rate.current(t0), 1000);
        assert_eq!(rate.on_throttled(t0), 500);
        // Lowered below the throttled rate: follows it down.
        rate.set_configured(80);
        assert_eq!(rate.current(t0), 80);
        assert_eq!(rate.on_throttled(t0 + secs(1)), 40);
        // Raised while throttled: recovers towards the new rate in its steps.
        rate.set_configured(200);
        assert_eq!(rate.current(t0 + secs(1)), 40);
        assert_eq!(rate.current(t0 + secs(11)), 60);
        assert_eq!(rate.current(t0 + secs(100)), 200);
        rate.set_configured(0);
        assert_eq!(rate.configured(), 1);
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(70);
        rate.on_throttled(t0 + secs(5));
        assert_eq!(rate.current(t0), 35);
        assert_eq!(rate.on_throttled(t0), 35);
        assert_eq!(rate.current(t0 + secs(14)), 35);
        assert_eq!(rate.current(t0 + secs(15)), 42);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let t0 = Instant::now();
        let mut rate = AdaptiveRate::new(u32::MAX).with_recovery_step(Duration::from_nanos(1));
        assert_eq!(rate.on_throttled(t0), u32::MAX / 2);
        assert_eq!(rate.current(t0 + Duration::from_nanos(3)), 3_435_973_837);
        assert_eq!(rate.current(t0 + Duration::from_nanos(5)), u32::MAX);
        let mut slow = AdaptiveRate::new(u32::MAX).with_recovery_step(Duration::MAX);
        slow.on_throttled(t0);
        assert_eq!(slow.current(t0 + secs(1_000_000)), u32::MAX / 2);
    }

    #[test]
    fn the_tier_caps_the_configured_rate_with_room_for_inbound_messages() {
        assert_eq!(tier_capped(70, None), 70);
        assert_eq!(tier_capped(70, Some(80)), 70);
        assert_eq!(tier_capped(70, Some(20)), 18);
        assert_eq!(tier_capped(1_000, Some(80)), 70);
        assert_eq!(tier_capped(1_000, Some(1_000)), 875);
        assert_eq!(tier_capped(5, Some(1)), 1);
    }
}
