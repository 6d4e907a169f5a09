//! The per-sender rate limiter: at most `limit` sends in any window of
//! `window` (one second for a sender's throughput).
//!
//! Meta does not say how it measures "per second", so the gateway keeps every
//! one-second window at or under the sender's rate (product.md, guarantee 4).
//! A token bucket or GCRA with a burst lets some windows exceed the rate, and
//! with no burst loses throughput to timer lateness; an exact sliding-window
//! log does neither. It is owned by the one worker that drains the sender, and
//! handed to the next owner through [`SendWindow::recent`] / [`SendWindow::seed`].
//!
//! Semantics: a send at `t` is allowed when fewer than `limit` recorded sends
//! lie in `(t - window, t]` (two sends exactly `window` apart are never in the
//! same window) and no recorded send is later than `t`. Hence every half-open
//! window `[s, s + window)` holds at most `limit` sends: of `limit + 1` sends
//! in one, the last admitted saw the other `limit` less than `window` before
//! it and would have been refused. Time moving backwards (an `Instant` older
//! than the newest send) is refused, never allowed out of order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `limit` sends in any window of `window` (default 1 s).
#[derive(Debug, Clone)]
pub struct SendWindow {
    /// Times of the sends that can still matter, oldest first: every send
    /// less than `window` before the newest one. That is the last `limit`
    /// sends in steady state, and more for a while after the limit is
    /// lowered, so that raising it again cannot forget sends still in a window.
    sends: VecDeque<Instant>,
    limit: u32,
    window: Duration,
}

impl Default for SendWindow {
    /// The product's default: 70 sends per second.
    fn default() -> Self {
        Self::new(70, Duration::from_secs(1))
    }
}

impl SendWindow {
    /// `limit` below 1 counts as 1: stopping a sender is a pause, not a rate.
    /// A zero `window` imposes no limit.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            sends: VecDeque::new(),
            limit: limit.max(1),
            window,
        }
    }

    /// If a send is allowed at `now`, records it and returns `Ok(())`; else
    /// `Err(earliest instant at which one is allowed)`, which is after `now`.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        let allowed_at = self.next_allowed(now);
        if allowed_at > now {
            return Err(allowed_at);
        }
        self.sends.push_back(now);
        self.forget_expired();
        Ok(())
    }

    /// Earliest instant a send would be allowed; `now` when it is allowed now.
    pub fn next_allowed(&self, now: Instant) -> Instant {
        let newest = self.sends.back().copied().unwrap_or(now);
        let after_window = self.limit_th_newest().map_or(now, |oldest_counted| {
            add_saturating(oldest_counted, self.window)
        });
        now.max(newest).max(after_window)
    }

    /// Changes the limit (adaptive rate); keeps history. A lower limit takes
    /// effect at once: the next send must find fewer than the new limit in
    /// the window behind it. Below 1 counts as 1.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit.max(1);
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Seeds the log with sends made by a previous owner of the sender
    /// (handover), so the window still holds across owners. Seed before
    /// sending: a seeded send is counted from then on, but sends already
    /// admitted cannot be undone. Sends later than the local clock make the
    /// next send wait for them.
    pub fn seed(&mut self, earlier_sends: impl IntoIterator<Item = Instant>) {
        self.sends.extend(earlier_sends);
        self.sends.make_contiguous().sort_unstable();
        self.forget_expired();
    }

    /// A send recorded at `recorded` actually left at `left` (later: the
    /// call waited for something after its slot was taken). It counts from
    /// `left` on, so that the sends after it keep their distance from when
    /// it really reached Meta, not from when it was allowed. Unknown or
    /// already forgotten sends are ignored.
    pub fn delay(&mut self, recorded: Instant, left: Instant) {
        if left <= recorded {
            return;
        }
        let Ok(index) = self.sends.binary_search(&recorded) else {
            return;
        };
        self.sends.remove(index);
        let at = self.sends.partition_point(|send| *send <= left);
        self.sends.insert(at, left);
        self.forget_expired();
    }

    /// The send recorded at `recorded` never reached Meta (its attempt
    /// ended before the call): the window is as if it had not been taken.
    /// Unknown or already forgotten sends are ignored.
    pub fn give_back(&mut self, recorded: Instant) {
        if let Ok(index) = self.sends.binary_search(&recorded) {
            self.sends.remove(index);
        }
    }

    /// The recorded send times, oldest first (for handing over).
    pub fn recent(&self) -> impl Iterator<Item = Instant> + '_ {
        self.sends.iter().copied()
    }

    /// The `limit`-th most recent send, if there are that many: the one that
    /// must be a whole `window` old before another send is allowed.
    fn limit_th_newest(&self) -> Option<Instant> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let index = self.sends.len().checked_sub(limit)?;
        self.sends.get(index).copied()
    }

    /// Drops sends a whole `window` before the newest: every future send is
    /// at or after the newest, so a send that old never shares a window with one.
    fn forget_expired(&mut self) {
        let Some(&newest) = self.sends.back() else {
            return;
        };
        while let Some(&oldest) = self.sends.front() {
            if newest.saturating_duration_since(oldest) < self.window {
                break;
            }
            self.sends.pop_front();
        }
    }
}

/// `at + by`, or the latest instant that can be represented (only reachable
/// with absurd windows, where "not in this epoch" is the right answer).
fn add_saturating(at: Instant, by: Duration) -> Instant {
    if let Some(later) = at.checked_add(by) {
        return later;
    }
    // Climb towards the end of representable time in halving steps.
    let mut result = at;
    let mut step = by;
    while !step.is_zero() {
        match result.checked_add(step) {
            Some(later) => result = later,
            None => step /= 2,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Deterministic pseudo-random numbers (splitmix64) for property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn a_send_that_left_late_counts_from_when_it_left() {
        let start = Instant::now();
        let mut window = SendWindow::new(2, SECOND);
        assert!(window.try_acquire(start).is_ok());
        assert!(window.try_acquire(start + ms(10)).is_ok());
        // The first send waited 300 ms after its slot: the third may go a
        // whole window after that, not after the slot.
        window.delay(start, start + ms(300));
        assert_eq!(window.next_allowed(start + ms(20)), start + ms(1_010));
        window.delay(start + ms(10), start + ms(400));
        assert_eq!(window.next_allowed(start + ms(20)), start + ms(1_300));
        // An unknown send, or an earlier time, changes nothing.
        window.delay(start + ms(5), start + ms(900));
        window.delay(start + ms(400), start + ms(100));
        assert_eq!(window.next_allowed(start + ms(20)), start + ms(1_300));
    }

    #[test]
    fn a_send_given_back_frees_its_place() {
        let start = Instant::now();
        let mut window = SendWindow::new(2, SECOND);
        assert!(window.try_acquire(start).is_ok());
        assert!(window.try_acquire(start + ms(10)).is_ok());
        assert_eq!(window.next_allowed(start + ms(20)), start + SECOND);
        window.give_back(start + ms(10));
        assert_eq!(window.next_allowed(start + ms(20)), start + ms(20));
        // An unknown send changes nothing.
        assert!(window.try_acquire(start + ms(20)).is_ok());
        window.give_back(start + ms(15));
        assert_eq!(window.next_allowed(start + ms(30)), start + SECOND);
    }

    /// The most sends any half-open window `[t, t + window)` holds. Checking
    /// windows that start at a send suffices: any window holds no more than
    /// the one starting at its first send.
    fn busiest_window(sends: &[Instant], window: Duration) -> usize {
        sends
            .iter()
            .map(|&start| {
                sends
                    .iter()
                    .filter(|&&t| t >= start && t.duration_since(start) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_burst_of_limit_passes_and_the_next_waits_a_whole_window() {
        let t0 = Instant::now();
        let mut window = SendWindow::new(3, SECOND);
        for i in 0..3 {
            assert_eq!(window.try_acquire(t0 + ms(i * 10)), Ok(()));
        }
        // The first of the three must be a whole window old.
        assert_eq!(window.try_acquire(t0 + ms(30)), Err(t0 + SECOND));
        assert_eq!(window.next_allowed(t0 + ms(30)), t0 + SECOND);
        assert_eq!(window.try_acquire(t0 + SECOND - ms(1)), Err(t0 + SECOND));
        // Exactly one window apart is allowed: (t - window, t] excludes t0.
        assert_eq!(window.try_acquire(t0 + SECOND), Ok(()));
        assert_eq!(window.try_acquire(t0 + SECOND), Err(t0 + SECOND + ms(10)));
    }

    #[test]
    fn next_allowed_is_now_when_free() {
        let t0 = Instant::now();
        let mut window = SendWindow::new(2, SECOND);
        assert_eq!(window.next_allowed(t0), t0);
        assert_eq!(window.try_acquire(t0), Ok(()));
        assert_eq!(window.next_allowed(t0 + ms(5)), t0 + ms(5));
    }

    #[test]
    fn sustained_rate_is_exactly_limit_per_window() {
        let t0 = Instant::now();
        let limit = 70;
        let mut window = SendWindow::new(limit, SECOND);
        let mut now = t0;
        let mut sends = Vec::new();
        // Send whenever allowed, waking exactly at the instant we are told.
        while now < t0 + 10 * SECOND {
            match window.try_acquire(now) {
                Ok(()) => sends.push(now),
                Err(at) => now = at,
            }
        }
        assert_eq!(sends.len(), 10 * limit as usize);
        for second in 0..10 {
            let start = t0 + second * SECOND;
            let in_second = sends
                .iter()
                .filter(|&&t| t >= start && t < start + SECOND)
                .count();
            assert_eq!(in_second, limit as usize, "second {second}");
        }
        assert_eq!(busiest_window(&sends, SECOND), limit as usize);
    }

    #[test]
    fn random_arrivals_never_overfill_any_window() {
        let mut rng = Rng(7);
        for round in 0..200 {
            let limit = 1 + rng.below(6) as u32;
            let span = ms(100 + rng.below(1500));
            let mut window = SendWindow::new(limit, span);
            let t0 = Instant::now();
            let mut now = t0;
            let mut sends = Vec::new();
            for _ in 0..300 {
                // Bursts of simultaneous arrivals, small gaps, long pauses.
                now += match rng.below(4) {
                    0 => Duration::ZERO,
                    1 => ms(rng.below(20)),
                    2 => ms(rng.below(300)),
                    _ => ms(rng.below(2000)),
                };
                match window.try_acquire(now) {
                    Ok(()) => sends.push(now),
                    // Half the time the caller waits exactly as told, as a
                    // worker does: then the send must go through.
                    Err(at) if rng.below(2) == 0 => {
                        assert!(at > now, "round {round}");
                        now = at;
                        assert_eq!(window.try_acquire(now), Ok(()), "round {round}");
                        sends.push(now);
                    }
                    Err(at) => assert!(at > now, "round {round}"),
                }
                assert!(window.recent().count() <= limit as usize);
            }
            assert!(
                busiest_window(&sends, span) <= limit as usize,
                "round {round}: limit {limit} in {span:?}"
            );
        }
    }

    #[test]
    fn changing_limits_apply_to_every_later_send() {
        let mut rng = Rng(11);
        for round in 0..100 {
            let mut window = SendWindow::new(1 + rng.below(8) as u32, SECOND);
            let t0 = Instant::now();
            let mut now = t0;
            let mut sends: Vec<(Instant, u32)> = Vec::new();
            for _ in 0..400 {
                if rng.below(20) == 0 {
                    window.set_limit(1 + rng.below(8) as u32);
                }
                now += ms(rng.below(150));
                if window.try_acquire(now).is_ok() {
                    sends.push((now, window.limit()));
                }
            }
            // Each send saw fewer than its limit in the window behind it, so
            // the window ending at it holds at most that limit.
            for &(t, limit) in &sends {
                let behind = sends
                    .iter()
                    .filter(|&&(s, _)| s <= t && t.duration_since(s) < SECOND)
                    .count();
                assert!(behind <= limit as usize, "round {round}");
            }
        }
    }

    #[test]
    fn lowering_the_limit_takes_effect_at_once_and_raising_remembers() {
        let t0 = Instant::now();
        let mut window = SendWindow::new(10, SECOND);
        for i in 0..5 {
            assert_eq!(window.try_acquire(t0 + ms(i)), Ok(()));
        }
        window.set_limit(2);
        assert_eq!(window.limit(), 2);
        // Two sends at 3 ms and 4 ms must age a whole window first.
        assert_eq!(window.try_acquire(t0 + ms(10)), Err(t0 + SECOND + ms(3)));
        // Raising it again still counts all five sends.
        window.set_limit(6);
        assert_eq!(window.try_acquire(t0 + ms(20)), Ok(()));
        assert_eq!(window.try_acquire(t0 + ms(21)), Err(t0 + SECOND));
        window.set_limit(0);
        assert_eq!(window.limit(), 1);
    }

    #[test]
    fn seeded_sends_count_across_a_handover() {
        let t0 = Instant::now();
        let mut old_owner = SendWindow::new(3, SECOND);
        for i in 0..3 {
            assert_eq!(old_owner.try_acquire(t0 + ms(100 * i)), Ok(()));
        }
        let mut new_owner = SendWindow::new(3, SECOND);
        // Handed over in any order.
        new_owner.seed(old_owner.recent().collect::<Vec<_>>().into_iter().rev());
        assert_eq!(
            new_owner.recent().collect::<Vec<_>>(),
            [t0, t0 + ms(100), t0 + ms(200)]
        );
        assert_eq!(new_owner.try_acquire(t0 + ms(300)), Err(t0 + SECOND));
        assert_eq!(new_owner.try_acquire(t0 + SECOND), Ok(()));
        // Sends a whole window old are dropped on seeding.
        let mut fresh = SendWindow::new(1, SECOND);
        fresh.seed([t0, t0 + 2 * SECOND]);
        assert_eq!(fresh.recent().collect::<Vec<_>>(), [t0 + 2 * SECOND]);
    }

    #[test]
    fn time_moving_backwards_is_refused() {
        let t0 = Instant::now();
        let mut window = SendWindow::new(5, SECOND);
        window.seed([t0 + ms(500)]);
        assert_eq!(window.try_acquire(t0), Err(t0 + ms(500)));
        assert_eq!(window.try_acquire(t0 + ms(500)), Ok(()));
    }

    #[test]
    fn degenerate_settings_do_not_panic() {
        let t0 = Instant::now();
        let mut unlimited = SendWindow::new(0, Duration::ZERO);
        assert_eq!(unlimited.limit(), 1);
        for _ in 0..3 {
            assert_eq!(unlimited.try_acquire(t0), Ok(()));
        }
        let mut forever = SendWindow::new(1, Duration::MAX);
        assert_eq!(forever.try_acquire(t0), Ok(()));
        let at = forever.next_allowed(t0);
        assert!(at > t0);
        assert_eq!(forever.try_acquire(t0 + SECOND), Err(at));
    }

    #[test]
    fn add_saturating_adds_exactly_when_representable() {
        let t0 = Instant::now();
        assert_eq!(add_saturating(t0, ms(1500)), t0 + ms(1500));
        assert_eq!(add_saturating(t0, Duration::ZERO), t0);
        assert!(add_saturating(t0, Duration::MAX) > t0 + SECOND);
    }
}
