//! The 24-hour customer-service window: a user's message lets the business
//! send free-form messages to them for 24 hours; outside it only templates
//! go. The gateway knows of a window only from inbound webhooks, and sends
//! free-form only when the window stays open a safety margin past now, so a
//! message that waits in a queue or a retry does not arrive just too late.

/// How long a user's message keeps their window open.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// When the window opened by an inbound message at `inbound_ms` closes (Unix ms).
pub fn closes_at(inbound_ms: i64) -> i64 {
    inbound_ms.saturating_add(WINDOW_MS)
}

/// Whether a free-form message may be sent now, given the user's last
/// inbound message (Unix ms) as far as the gateway knows.
pub fn allows_free_form(last_inbound_ms: Option<i64>, now_ms: i64, margin_ms: i64) -> bool {
    last_inbound_ms.is_some_and(|inbound| closes_at(inbound) > now_ms.saturating_add(margin_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const MINUTE: i64 = 60_000;

    #[test]
    fn no_inbound_message_means_no_window() {
        assert!(!allows_free_form(None, NOW, 0));
    }

    #[test]
    fn a_window_is_open_for_24_hours_less_the_margin() {
        let margin = 5 * MINUTE;
        assert!(allows_free_form(Some(NOW - MINUTE), NOW, margin));
        assert!(allows_free_form(
            Some(NOW - WINDOW_MS + 6 * MINUTE),
            NOW,
            margin
        ));
        // Closes within the margin: a template is the safe choice.
        assert!(!allows_free_form(
            Some(NOW - WINDOW_MS + 4 * MINUTE),
            NOW,
            margin
        ));
        assert!(!allows_free_form(Some(NOW - WINDOW_MS), NOW, 0));
        assert!(!allows_free_form(Some(NOW - 25 * 60 * MINUTE), NOW, 0));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        assert!(allows_free_form(Some(i64::MAX), NOW, 0));
        assert!(!allows_free_form(Some(NOW), NOW, i64::MAX));
        assert!(!allows_free_form(Some(i64::MIN), NOW, 0));
    }
}
