//! Wall-clock time as the gateway stores it: Unix milliseconds. The one
//! seam for it: a test (or a simulation) moves the whole process's clock
//! forward with [`advance`] instead of waiting, and every part reading
//! [`unix_ms`] sees the same moved time. Production never moves it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How far this process's clock was moved forward.
static ADVANCED_MS: AtomicI64 = AtomicI64::new(0);

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> i64 {
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    system.saturating_add(ADVANCED_MS.load(Ordering::Relaxed))
}

/// Moves this process's clock forward by `by`, for tests and simulations.
/// Waits already measured in `Instant`s are not shortened: a process that
/// must act on the new time looks at it anew (a worker that starts, a
/// request that comes).
pub fn advance(by: Duration) {
    let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    ADVANCED_MS.fetch_add(ms, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_when_told() {
        let before = unix_ms();
        advance(Duration::from_secs(3_600));
        let after = unix_ms();
        assert!(after - before >= 3_600_000, "{before} -> {after}");
        assert!(after - before < 3_660_000);
    }
}
