//! A warning that may fire on every request of a flood (a full backlog
//! refusing each webhook, dropping each notification) is written at most
//! once per interval, with how many occurrences it stood for; the counter
//! beside it keeps the exact number. Lock-free, so the hot path that may
//! trigger it pays one atomic load when it is quiet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets a repeated log line through at most once per `interval`.
#[derive(Debug)]
pub struct LogThrottle {
    interval_ms: u64,
    start: Instant,
    /// Milliseconds since `start` before which no line is let through.
    next_ms: AtomicU64,
    /// Occurrences held back since the last line.
    held: AtomicU64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Records one occurrence. `Some(n)` when a line may be written now,
    /// `n` being the occurrences held back since the previous one; `None`
    /// when this one is held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`admit`](Self::admit) at `now`.
    fn admit_at(&self, now: Instant) -> Option<u64> {
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        let next_ms = self.next_ms.load(Ordering::Relaxed);
        // Of several threads at the deadline, the one that moves it writes.
        if now_ms >= next_ms
            && self
                .next_ms
                .compare_exchange(
                    next_ms,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_written_and_the_next_ones_are_counted() {
        let throttle = LogThrottle::new(Duration::from_secs(3_600));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.admit(), None);
        }
        assert_eq!(throttle.held.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_line_is_written_again_once_the_interval_has_passed() {
        let throttle = LogThrottle::new(Duration::ZERO);
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), Some(0));

        let throttle = LogThrottle::new(Duration::from_millis(20));
        let at = |ms| throttle.start + Duration::from_millis(ms);
        assert_eq!(throttle.admit_at(at(0)), Some(0));
        assert_eq!(throttle.admit_at(at(5)), None);
        assert_eq!(throttle.admit_at(at(19)), None);
        assert_eq!(throttle.admit_at(at(20)), Some(2));
        assert_eq!(throttle.admit_at(at(21)), None);
    }
}
