//! The live state of one business number: its throughput bucket and, per
//! user, the pair limit and the customer-service window.
//!
//! Each number has its own locks, so numbers never contend with each other.
//! The send path takes the users lock, then the bucket lock; inbound
//! messages take them one after the other, never both, so there is no
//! deadlock. Users whose state no longer matters (pair limit idle, window
//! closed) are swept out when the map has doubled since the last sweep,
//! which keeps memory bounded by the users active in the last 24 hours.
//!
//! A user's message may be dated in the past (`age`): it opens the window
//! for what is left of its 24 hours, and it weighs on the bucket only if it
//! is younger than the one second of sends the bucket holds; an older one
//! would long since have been refilled. Closing a window (`close_window`)
//! touches no other state and creates none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{FailureMode, NumberConfig, Rules};
use crate::errors::MetaError;
use crate::locks::lock;
use crate::rules::pair::PairLimit;
use crate::rules::throughput::TokenBucket;
use crate::rules::window::{self, Window};

const MIN_SWEEP_SIZE: usize = 1_024;

/// How long a user's message weighs on the throughput bucket, which holds
/// one second's worth of messages.
const BUCKET_SPAN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Default)]
struct UserState {
    pair: PairLimit,
    window: Window,
}

impl UserState {
    fn is_idle(&self, now: Instant) -> bool {
        self.pair.is_idle(now) && !self.window.is_open(now)
    }
}

#[derive(Debug)]
struct Users {
    states: HashMap<Box<str>, UserState>,
    sweep_at: usize,
}

impl Users {
    fn new() -> Self {
        Self {
            states: HashMap::new(),
            sweep_at: MIN_SWEEP_SIZE,
        }
    }

    /// Runs `f` on the user's state, creating it (after a sweep, when due)
    /// if the user is new.
    fn with<R>(&mut self, user: &str, now: Instant, f: impl FnOnce(&mut UserState) -> R) -> R {
        if let Some(state) = self.states.get_mut(user) {
            return f(state);
        }
        if self.states.len() >= self.sweep_at {
            self.states.retain(|_, state| !state.is_idle(now));
            self.sweep_at = (self.states.len() * 2).max(MIN_SWEEP_SIZE);
        }
        f(self.states.entry(user.into()).or_default())
    }
}

#[derive(Debug)]
pub(crate) struct NumberState {
    pub(crate) config: Arc<NumberConfig>,
    /// The id as records share it, so a record costs a reference count.
    pub(crate) id: Arc<str>,
    bucket: Mutex<TokenBucket>,
    users: Mutex<Users>,
}

/// What the per-user rules decided about a send they let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The window was open (or the window rule is off).
    pub(crate) window_open: bool,
    /// The user's window was open, as far as it was looked at (with both
    /// the window and the pair rule off it is not): for pricing.
    pub(crate) in_window: bool,
}

impl NumberState {
    pub(crate) fn new(config: NumberConfig, now: Instant) -> Self {
        Self {
            id: Arc::from(config.phone_number_id.as_str()),
            bucket: Mutex::new(TokenBucket::new(config.rate_per_second, now)),
            users: Mutex::new(Users::new()),
            config: Arc::new(config),
        }
    }

    /// Applies the window (when it fails synchronously), throughput and pair
    /// rules to one send, in that order; a send they refuse uses no quota.
    /// `pair_limited` (a fault) refuses the send where the pair rule would,
    /// rule on or off, and leaves the user's pair state alone.
    pub(crate) fn admit(
        &self,
        user: &str,
        is_template: bool,
        pair_limited: bool,
        rules: &Rules,
        now: Instant,
    ) -> Result<Admitted, MetaError> {
        if !rules.window && !rules.pair {
            self.take_token(rules, now)?;
            if pair_limited {
                return Err(self.refuse_pair(rules));
            }
            return Ok(Admitted {
                window_open: true,
                in_window: false,
            });
        }
        let mut users = lock(&self.users);
        let window = users
            .states
            .get(user)
            .map(|state| state.window)
            .unwrap_or_default();
        if rules.window
            && rules.window_failure == FailureMode::Sync
            && !window.allows(is_template, now)
        {
            return Err(MetaError::window_closed());
        }
        let in_window = window.is_open(now);
        let window_open = !rules.window || in_window;
        self.take_token(rules, now)?;
        if pair_limited
            || (rules.pair && !users.with(user, now, |state| state.pair.try_accept(now)))
        {
            return Err(self.refuse_pair(rules));
        }
        Ok(Admitted {
            window_open,
            in_window,
        })
    }

    /// Applies the throughput rule alone, to a call that is not a message
    /// to a user (a read receipt).
    pub(crate) fn admit_call(&self, rules: &Rules, now: Instant) -> Result<(), MetaError> {
        self.take_token(rules, now)
    }

    /// 131056, giving back the token the refused send took.
    fn refuse_pair(&self, rules: &Rules) -> MetaError {
        if rules.throughput {
            lock(&self.bucket).refund();
        }
        MetaError::pair_limited()
    }

    fn take_token(&self, rules: &Rules, now: Instant) -> Result<(), MetaError> {
        if rules.throughput && !lock(&self.bucket).try_take(now) {
            return Err(MetaError::throttled(rules.throughput_http_429));
        }
        Ok(())
    }

    /// A user's message sent `age` before `now`: counts against throughput
    /// (when that rule is on and the message is recent) and opens the window
    /// for what is left of its 24 hours.
    pub(crate) fn receive(&self, user: &str, count_throughput: bool, now: Instant, age: Duration) {
        if count_throughput && age < BUCKET_SPAN {
            lock(&self.bucket).take_inbound(now);
        }
        if age < window::LENGTH {
            lock(&self.users).with(user, now, |state| state.window.open(now, age));
        }
    }

    /// Closes the user's window until they write again.
    pub(crate) fn close_window(&self, user: &str) {
        if let Some(state) = lock(&self.users).states.get_mut(user) {
            state.window.close();
        }
    }

    pub(crate) fn reset(&self, now: Instant) {
        *lock(&self.bucket) = TokenBucket::new(self.config.rate_per_second, now);
        *lock(&self.users) = Users::new();
    }

    #[cfg(test)]
    fn tracked_users(&self) -> usize {
        lock(&self.users).states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(rate: u32) -> (NumberState, Instant) {
        let now = Instant::now();
        let mut config = NumberConfig::new("1", "2", "t");
        config.rate_per_second = rate;
        (NumberState::new(config, now), now)
    }

    fn code(result: Result<Admitted, MetaError>) -> Option<i64> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn free_form_needs_an_open_window_and_templates_do_not() {
        let (number, now) = number(80);
        let rules = Rules {
            pair: false,
            ..Rules::default()
        };
        assert_eq!(
            code(number.admit("u", false, false, &rules, now)),
            Some(131_047)
        );
        assert_eq!(
            number.admit("u", true, false, &rules, now).ok(),
            Some(Admitted {
                window_open: false,
                in_window: false
            })
        );
        number.receive("u", true, now, Duration::ZERO);
        assert_eq!(
            number.admit("u", false, false, &rules, now).ok(),
            Some(Admitted {
                window_open: true,
                in_window: true
            })
        );
        assert_eq!(
            code(number.admit("other", false, false, &rules, now)),
            Some(131_047),
            "windows are per user"
        );
    }

    #[test]
    fn async_window_failure_admits_and_reports_the_closed_window() {
        let (number, now) = number(80);
        let rules = Rules {
            window_failure: FailureMode::Async,
            ..Rules::default()
        };
        assert_eq!(
            number.admit("u", false, false, &rules, now).ok(),
            Some(Admitted {
                window_open: false,
                in_window: false
            })
        );
    }

    #[test]
    fn rejected_sends_use_no_quota() {
        let (number, now) = number(2);
        let rules = Rules::default();
        // Window refusals come first and take nothing.
        for _ in 0..10 {
            assert_eq!(
                code(number.admit("closed", false, false, &rules, now)),
                Some(131_047)
            );
        }
        // A pair refusal gives its token back.
        assert!(number.admit("a", true, false, &rules, now).is_ok());
        assert!(number.admit("a", true, false, &rules, now).is_ok());
        let burst_over = now + Duration::from_secs(7);
        assert!(number.admit("b", true, false, &rules, burst_over).is_ok());
        assert_eq!(
            code(number.admit("a", true, false, &rules, burst_over)),
            Some(131_056)
        );
        assert!(
            number.admit("c", true, false, &rules, burst_over).is_ok(),
            "the refused send's token came back"
        );
        assert_eq!(
            code(number.admit("d", true, false, &rules, burst_over)),
            Some(130_429)
        );
    }

    #[test]
    fn a_forced_pair_limit_refuses_where_and_as_the_pair_rule_does() {
        let (number, now) = number(1);
        for rules in [
            Rules::default(),
            Rules::off(),
            Rules {
                throughput: true,
                ..Rules::off()
            },
        ] {
            for _ in 0..3 {
                assert_eq!(
                    code(number.admit("u", true, true, &rules, now)),
                    Some(131_056),
                    "{rules:?}"
                );
            }
        }
        assert_eq!(number.tracked_users(), 0, "no pair state was touched");
        let rules = Rules::default();
        assert_eq!(
            code(number.admit("u", false, true, &rules, now)),
            Some(131_047),
            "the window is checked first"
        );
        assert!(
            number.admit("other", true, false, &rules, now).is_ok(),
            "every refusal gave its token back"
        );
        assert_eq!(
            code(number.admit("u", true, true, &rules, now)),
            Some(130_429),
            "throughput is checked first"
        );
    }

    #[test]
    fn inbound_messages_use_the_senders_quota() {
        let (number, now) = number(3);
        let rules = Rules::off();
        let throughput = Rules {
            throughput: true,
            ..rules
        };
        number.receive("u", true, now, Duration::ZERO);
        number.receive("u", true, now, Duration::ZERO);
        assert!(number.admit("u", false, false, &throughput, now).is_ok());
        assert_eq!(
            code(number.admit("u", false, false, &throughput, now)),
            Some(130_429)
        );
        assert!(
            number.admit("u", false, false, &rules, now).is_ok(),
            "rule off"
        );
    }

    #[test]
    fn idle_users_are_swept_when_the_map_grows() {
        let (number, now) = number(80);
        let rules = Rules {
            throughput: false,
            ..Rules::default()
        };
        for i in 0..MIN_SWEEP_SIZE - 1 {
            assert!(
                number
                    .admit(&format!("u{i}"), true, false, &rules, now)
                    .is_ok()
            );
        }
        number.receive("keep", false, now, Duration::ZERO);
        let later = now + Duration::from_secs(60);
        assert!(number.admit("new", true, false, &rules, later).is_ok());
        assert_eq!(
            number.tracked_users(),
            2,
            "only the open window and the new user remain"
        );
        assert_eq!(
            code(number.admit("new", true, false, &rules, later)),
            None,
            "burst still allows it"
        );
        number.reset(later);
        assert_eq!(number.tracked_users(), 0);
    }

    #[test]
    fn a_past_message_opens_the_window_for_what_is_left_of_its_day() {
        let (number, now) = number(80);
        let rules = Rules {
            pair: false,
            ..Rules::default()
        };
        let hour = Duration::from_secs(3600);
        number.receive("old", true, now, 25 * hour);
        assert_eq!(
            code(number.admit("old", false, false, &rules, now)),
            Some(131_047)
        );
        assert_eq!(number.tracked_users(), 0, "a stale message stores nothing");

        let minute = Duration::from_secs(60);
        number.receive("recent", true, now, window::LENGTH - minute);
        assert!(number.admit("recent", false, false, &rules, now).is_ok());
        let later = now + minute;
        assert_eq!(
            code(number.admit("recent", false, false, &rules, later)),
            Some(131_047),
            "open for one more minute only"
        );

        number.receive("recent", true, now, 23 * hour);
        assert!(
            number
                .admit("recent", false, false, &rules, now + hour - minute)
                .is_ok()
        );
    }

    #[test]
    fn only_a_recent_message_uses_the_buckets_quota() {
        let (number, now) = number(1);
        let rules = Rules {
            throughput: true,
            ..Rules::off()
        };
        number.receive("u", true, now, Duration::from_secs(5));
        assert!(
            number.admit("u", false, false, &rules, now).is_ok(),
            "not counted"
        );
        number.receive("u", true, now, Duration::from_millis(500));
        assert_eq!(
            code(number.admit("u", false, false, &rules, now)),
            Some(130_429)
        );
    }

    #[test]
    fn a_closed_window_stays_closed_until_the_user_writes() {
        let (number, now) = number(80);
        let rules = Rules {
            pair: false,
            ..Rules::default()
        };
        number.close_window("nobody");
        assert_eq!(number.tracked_users(), 0, "closing creates no state");

        number.receive("u", true, now, Duration::ZERO);
        number.close_window("u");
        assert_eq!(
            code(number.admit("u", false, false, &rules, now)),
            Some(131_047)
        );
        assert!(
            number.admit("u", true, false, &rules, now).is_ok(),
            "templates pass"
        );
        let async_rules = Rules {
            window_failure: FailureMode::Async,
            ..rules
        };
        assert_eq!(
            number.admit("u", false, false, &async_rules, now).ok(),
            Some(Admitted {
                window_open: false,
                in_window: false
            })
        );
        number.receive("u", true, now, Duration::ZERO);
        assert!(number.admit("u", false, false, &rules, now).is_ok());
    }
}
