//! Fault injection on the Graph send route: added latency, a share of HTTP
//! 5xx answers, a share of connections closed without an answer, periods of
//! forced throttling (130429) or maintenance (131057), and recipients whose
//! every send is refused by the pair limit (131056) or fails with a 5xx.
//!
//! `Faults` is what callers set (periods as durations from that moment);
//! `ActiveFaults` is the same with the periods pinned to instants and the
//! recipients keyed as sends key their user, which is what the send path
//! reads.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::errors::MetaError;
use crate::random::Random;
use crate::user_id::UserId;

/// Longest period honoured, so that adding it to an `Instant` cannot overflow.
const MAX_PERIOD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every answer: a send is admitted (and counted) when it
    /// arrives and answered this much later, as by a Meta slow to answer.
    pub latency_ms: u64,
    /// Share (0..=1) of sends answered with HTTP 500 (code 1) or 503 (code 2).
    pub error_5xx_rate: f64,
    /// Share (0..=1) of sends whose connection is closed without an answer.
    pub drop_connection_rate: f64,
    /// Every send gets 130429 for this long from the moment the faults are set.
    pub throttle_for_ms: u64,
    /// Every send gets 131057 for this long from the moment the faults are set.
    pub maintenance_for_ms: u64,
    /// Recipients (a phone number in any form `to` accepts, or the BSUID a
    /// send names as `recipient`) whose sends all get 131056, at the place
    /// and with the quota of the pair rule: after the window and throughput
    /// checks, with the throughput token given back.
    pub pair_limited_recipients: Vec<String>,
    /// Recipients (as above) whose sends all get HTTP 500 (code 1) or 503
    /// (code 2), before any quota is used.
    pub failing_recipients: Vec<String>,
}

/// What a roll of the dice did to one request.
#[derive(Debug)]
pub(crate) enum Injected {
    DropConnection,
    ServerError(MetaError),
}

#[derive(Debug)]
pub(crate) struct ActiveFaults {
    faults: Faults,
    throttle_until: Option<Instant>,
    maintenance_until: Option<Instant>,
    /// The recipients of `faults` by `UserId::key`, so that a send matches
    /// whichever form of the number it uses.
    pair_limited: HashSet<String>,
    failing: HashSet<String>,
}

impl ActiveFaults {
    pub(crate) fn new(faults: Faults, now: Instant) -> Self {
        Self {
            throttle_until: until(now, faults.throttle_for_ms),
            maintenance_until: until(now, faults.maintenance_for_ms),
            pair_limited: keys(&faults.pair_limited_recipients),
            failing: keys(&faults.failing_recipients),
            faults,
        }
    }

    /// The faults as a caller would set them now: periods show what is left.
    pub(crate) fn remaining(&self, now: Instant) -> Faults {
        let left = |until: Option<Instant>| {
            until.map_or(0, |u| {
                u64::try_from(u.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
            })
        };
        Faults {
            throttle_for_ms: left(self.throttle_until),
            maintenance_for_ms: left(self.maintenance_until),
            ..self.faults.clone()
        }
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        (self.faults.latency_ms > 0).then(|| Duration::from_millis(self.faults.latency_ms))
    }

    pub(crate) fn throttled(&self, now: Instant) -> bool {
        self.throttle_until.is_some_and(|u| now < u)
    }

    pub(crate) fn in_maintenance(&self, now: Instant) -> bool {
        self.maintenance_until.is_some_and(|u| now < u)
    }

    /// Whether every send to `user` (a `UserId::key`) gets 131056.
    pub(crate) fn pair_limited(&self, user: &str) -> bool {
        self.pair_limited.contains(user)
    }

    /// Whether every send to `user` (a `UserId::key`) gets a 5xx.
    pub(crate) fn failing(&self, user: &str) -> bool {
        self.failing.contains(user)
    }

    /// Decides whether this request is dropped or failed before it is handled.
    pub(crate) fn roll(&self, random: &Random) -> Option<Injected> {
        if random.chance(self.faults.drop_connection_rate) {
            return Some(Injected::DropConnection);
        }
        if random.chance(self.faults.error_5xx_rate) {
            return Some(Injected::ServerError(server_error(random)));
        }
        None
    }
}

/// An HTTP 500 (code 1) or 503 (code 2): Meta answers both, and a client
/// must treat them alike.
pub(crate) fn server_error(random: &Random) -> MetaError {
    if random.chance(0.5) {
        MetaError::unknown()
    } else {
        MetaError::service_unavailable()
    }
}

/// Recipients keyed as sends key their user; one that is neither a phone
/// number nor a BSUID is kept as written and simply never matches, as in the
/// user directory.
fn keys(recipients: &[String]) -> HashSet<String> {
    recipients
        .iter()
        .map(|r| UserId::parse(r).map_or_else(|| r.clone(), |id| id.key().to_owned()))
        .collect()
}

fn until(now: Instant, ms: u64) -> Option<Instant> {
    if ms == 0 {
        return None;
    }
    now.checked_add(Duration::from_millis(ms).min(MAX_PERIOD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_when_set_and_end_after_their_duration() {
        let t0 = Instant::now();
        let faults = Faults {
            throttle_for_ms: 1_000,
            maintenance_for_ms: 500,
            ..Faults::default()
        };
        let active = ActiveFaults::new(faults, t0);
        assert!(active.throttled(t0));
        assert!(active.in_maintenance(t0 + Duration::from_millis(499)));
        assert!(!active.in_maintenance(t0 + Duration::from_millis(500)));
        assert!(active.throttled(t0 + Duration::from_millis(999)));
        assert!(!active.throttled(t0 + Duration::from_millis(1_000)));
        assert_eq!(
            active
                .remaining(t0 + Duration::from_millis(400))
                .throttle_for_ms,
            600
        );
        assert_eq!(
            active
                .remaining(t0 + Duration::from_secs(5))
                .maintenance_for_ms,
            0
        );
    }

    #[test]
    fn huge_periods_do_not_overflow() {
        let t0 = Instant::now();
        let active = ActiveFaults::new(
            Faults {
                throttle_for_ms: u64::MAX,
                ..Faults::default()
            },
            t0,
        );
        assert!(active.throttled(t0 + Duration::from_secs(3600 * 24 * 365)));
    }

    #[test]
    fn rates_of_zero_and_one_are_exact() {
        let random = Random::new(7);
        let none = ActiveFaults::new(Faults::default(), Instant::now());
        assert!((0..1_000).all(|_| none.roll(&random).is_none()));

        let all_5xx = ActiveFaults::new(
            Faults {
                error_5xx_rate: 1.0,
                ..Faults::default()
            },
            Instant::now(),
        );
        for _ in 0..100 {
            match all_5xx.roll(&random) {
                Some(Injected::ServerError(e)) => {
                    assert!(e.status.is_server_error() && (e.code == 1 || e.code == 2))
                }
                other => panic!("expected a server error, got {other:?}"),
            }
        }

        let all_dropped = ActiveFaults::new(
            Faults {
                drop_connection_rate: 1.0,
                ..Faults::default()
            },
            Instant::now(),
        );
        assert!(matches!(
            all_dropped.roll(&random),
            Some(Injected::DropConnection)
        ));
    }

    #[test]
    fn recipients_match_in_any_form_and_only_themselves() {
        let active = ActiveFaults::new(
            Faults {
                pair_limited_recipients: vec!["+1 (650) 555-1234".into(), "US.1349".into()],
                failing_recipients: vec!["16505550000".into(), "not a number".into()],
                ..Faults::default()
            },
            Instant::now(),
        );
        assert!(active.pair_limited("16505551234"));
        assert!(active.pair_limited("US.1349"));
        assert!(!active.pair_limited("16505550000"));
        assert!(active.failing("16505550000"));
        assert!(!active.failing("16505551234"));
        assert_eq!(
            active.remaining(Instant::now()).pair_limited_recipients,
            ["+1 (650) 555-1234", "US.1349"],
            "read back as written"
        );
    }

    #[test]
    fn old_json_still_parses_and_new_fields_are_named() {
        let old: Faults = serde_json::from_str(r#"{"error_5xx_rate": 0.5}"#).expect("old JSON");
        assert!(old.pair_limited_recipients.is_empty() && old.failing_recipients.is_empty());
        let new: Faults = serde_json::from_str(
            r#"{"pair_limited_recipients": ["+16505551234"], "failing_recipients": ["US.1"]}"#,
        )
        .expect("new JSON");
        assert_eq!(new.pair_limited_recipients, ["+16505551234"]);
        assert_eq!(new.failing_recipients, ["US.1"]);
        assert!(serde_json::from_str::<Faults>(r#"{"failing_recipient": []}"#).is_err());
    }
}
