//! Meta's pair rate limit for one (business number, recipient), exactly as
//! the sandbox's spec (cloud-api.md, rule 4) states it:
//!
//! keep `tat` (theoretical arrival time, at first minus infinity),
//! `burst_start` and `burst_count`. At time t: if t ≥ tat a new burst starts
//! (burst_start = t, count = 0); else if t < burst_start + 6 s and
//! count < 45 the message joins the burst; else 131056 and nothing changes.
//! On acceptance count += 1 and tat = max(tat, t) + 6 s.
//!
//! So one message every 6 s always passes, 45 within 6 s pass and the 46th
//! fails, and a burst borrows from the future: after 20 at once the next
//! passes only at 120 s.

use std::time::{Duration, Instant};

/// Sustained spacing of messages to one user.
pub(crate) const SPACING: Duration = Duration::from_secs(6);
/// How long a burst may keep growing after its first message.
pub(crate) const BURST_WINDOW: Duration = Duration::from_secs(6);
/// Most messages in one burst.
pub(crate) const BURST_MAX: u32 = 45;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PairLimit {
    /// `None` stands for minus infinity: nothing sent yet.
    tat: Option<Instant>,
    burst_start: Option<Instant>,
    burst_count: u32,
}

impl PairLimit {
    /// Accepts (and records) a message at `now`, or refuses it and changes
    /// nothing.
    pub(crate) fn try_accept(&mut self, now: Instant) -> bool {
        let (burst_start, burst_count) = match (self.tat, self.burst_start) {
            (Some(tat), Some(start)) if now < tat => {
                let in_window = start.checked_add(BURST_WINDOW).is_some_and(|end| now < end);
                if !(in_window && self.burst_count < BURST_MAX) {
                    return false;
                }
                (start, self.burst_count)
            }
            _ => (now, 0),
        };
        let Some(tat) = self
            .tat
            .map_or(now, |tat| tat.max(now))
            .checked_add(SPACING)
        else {
            return false;
        };
        *self = Self {
            tat: Some(tat),
            burst_start: Some(burst_start),
            burst_count: burst_count + 1,
        };
        true
    }

    /// True when the state no longer matters: the next message would start a
    /// new burst exactly as if nothing had been sent, so it can be forgotten.
    pub(crate) fn is_idle(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| now >= tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn one_message_every_six_seconds_always_passes() {
        let t0 = Instant::now();
        let mut pair = PairLimit::default();
        for i in 0..1_000 {
            assert!(pair.try_accept(t0 + SPACING * i), "message {i}");
        }
    }

    #[test]
    fn forty_five_within_six_seconds_pass_and_the_46th_fails() {
        let t0 = Instant::now();
        let mut pair = PairLimit::default();
        for i in 0..45 {
            // Spread over the burst window, all strictly inside it.
            assert!(
                pair.try_accept(t0 + secs(f64::from(i) * 0.13)),
                "message {i}"
            );
        }
        let before = pair;
        assert!(!pair.try_accept(t0 + secs(5.9)));
        // A refusal changes nothing.
        assert_eq!(format!("{before:?}"), format!("{pair:?}"));
    }

    #[test]
    fn a_burst_ends_six_seconds_after_it_started() {
        let t0 = Instant::now();
        let mut pair = PairLimit::default();
        assert!(pair.try_accept(t0));
        assert!(pair.try_accept(t0 + secs(1.0)));
        assert!(pair.try_accept(t0 + secs(5.999)));
        assert!(
            !pair.try_accept(t0 + secs(6.0)),
            "the window is over and tat is 18 s"
        );
    }

    #[test]
    fn after_a_burst_of_twenty_the_next_passes_at_120_seconds() {
        let t0 = Instant::now();
        let mut pair = PairLimit::default();
        for i in 0..20 {
            assert!(pair.try_accept(t0), "message {i}");
        }
        assert!(!pair.try_accept(t0 + secs(6.0)));
        assert!(!pair.try_accept(t0 + secs(60.0)));
        assert!(!pair.try_accept(t0 + secs(119.999)));
        assert!(!pair.is_idle(t0 + secs(119.999)));
        assert!(pair.is_idle(t0 + secs(120.0)));
        assert!(pair.try_accept(t0 + secs(120.0)));
        // That message starts a new burst, which may grow for 6 s.
        assert!(pair.try_accept(t0 + secs(125.0)));
        assert!(!pair.try_accept(t0 + secs(126.0)));
    }

    #[test]
    fn a_new_burst_may_start_once_tat_is_reached() {
        let t0 = Instant::now();
        let mut pair = PairLimit::default();
        assert!(pair.try_accept(t0));
        let t1 = t0 + secs(6.0);
        assert_eq!((0..50).filter(|_| pair.try_accept(t1)).count(), 45);
    }

    #[test]
    fn fresh_state_is_idle() {
        assert!(PairLimit::default().is_idle(Instant::now()));
    }
}
