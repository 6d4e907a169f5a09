//! The 24-hour customer-service window for one (business number, user): a
//! user's message opens it, or restarts it, until 24 hours after the message
//! was sent. A message from the past (a test's aged inbound) therefore opens
//! it only for what is left of its 24 hours, and never shortens a window a
//! later message opened. The business's own messages never extend it. Inside
//! it any message may be sent; outside it only templates (131047 otherwise).
//! It can also be closed early (`close`), as when the business's idea of it
//! is stale; only the user's next message opens it again.
//!
//! Times are `Instant`s, and a past message is given by its age rather than
//! as an `Instant` before `now`, which may not exist (an age longer than the
//! machine's uptime); the window's end is computed forwards from `now`.

use std::time::{Duration, Instant};

pub(crate) const LENGTH: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    ends: Option<Instant>,
}

impl Window {
    /// Records a user's message sent `age` before `now` (zero for a message
    /// sent now). A message 24 hours old or older changes nothing.
    pub(crate) fn open(&mut self, now: Instant, age: Duration) {
        let Some(left) = LENGTH.checked_sub(age).filter(|left| !left.is_zero()) else {
            return;
        };
        self.ends = self.ends.max(now.checked_add(left));
    }

    /// Closes the window until the user's next message.
    pub(crate) fn close(&mut self) {
        self.ends = None;
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

    const HOUR: Duration = Duration::from_secs(3600);

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
        window.open(t0, Duration::ZERO);
        assert!(window.allows(false, t0 + LENGTH - Duration::from_millis(1)));
        assert!(!window.allows(false, t0 + LENGTH));

        window.open(t0 + HOUR, Duration::ZERO);
        assert!(window.is_open(t0 + LENGTH));
        assert!(!window.is_open(t0 + LENGTH + HOUR));
    }

    #[test]
    fn a_past_message_opens_it_for_what_is_left_of_its_24_hours() {
        let t0 = Instant::now();
        let mut window = Window::default();
        window.open(t0, 25 * HOUR);
        assert!(!window.is_open(t0), "25 hours ago: already closed");
        window.open(t0, LENGTH);
        assert!(!window.is_open(t0), "exactly 24 hours ago: just closed");

        let minute = Duration::from_secs(60);
        window.open(t0, LENGTH - minute);
        assert!(window.is_open(t0 + minute - Duration::from_millis(1)));
        assert!(!window.is_open(t0 + minute));

        window.open(t0, Duration::MAX);
        assert!(window.is_open(t0), "an absurd age changes nothing");
    }

    #[test]
    fn a_past_message_never_shortens_the_window() {
        let t0 = Instant::now();
        let mut window = Window::default();
        window.open(t0, Duration::ZERO);
        window.open(t0, 23 * HOUR);
        assert!(window.is_open(t0 + 2 * HOUR), "the later message counts");
    }

    #[test]
    fn closing_lasts_until_the_next_message() {
        let t0 = Instant::now();
        let mut window = Window::default();
        window.open(t0, Duration::ZERO);
        window.close();
        assert!(!window.is_open(t0));
        assert!(window.allows(true, t0));
        window.open(t0 + HOUR, Duration::ZERO);
        assert!(window.is_open(t0 + HOUR));
    }
}
