//! The 24-hour customer-service window for one (business number, user): a
//! user's message opens it, or restarts it, until 24 hours later. The
//! business's own messages never extend it. Inside it any message may be
//! sent; outside it only templates (131047 otherwise).

use std::time::{Duration, Instant};

pub(crate) const LENGTH: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    ends: Option<Instant>,
}

impl Window {
    /// Records a user's message at `now`.
    pub(crate) fn open(&mut self, now: Instant) {
        self.ends = now.checked_add(LENGTH);
    }

    pub(crate) fn is_open(&self, now: Instant) -> bool {
        self.ends.is_some_and(|ends| now < ends)
    }

    /// Whether a message of this kind may be sent now.
    pub(crate) fn allows(&self, is_template: bool, now: Instant) -> bool {
        is_template || self.is_open(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_until_the_user_writes() {
        let t0 = Instant::now();
        let window = Window::default();
        assert!(!window.is_open(t0));
        assert!(!window.allows(false, t0));
        assert!(window.allows(true, t0), "templates ignore the window");
    }

    #[test]
    fn open_for_exactly_24_hours_after_the_last_user_message() {
        let t0 = Instant::now();
        let mut window = Window::default();
        window.open(t0);
        assert!(window.allows(false, t0 + LENGTH - Duration::from_millis(1)));
        assert!(!window.allows(false, t0 + LENGTH));

        window.open(t0 + Duration::from_secs(3600));
        assert!(window.is_open(t0 + LENGTH));
        assert!(!window.is_open(t0 + LENGTH + Duration::from_secs(3600)));
    }
}
