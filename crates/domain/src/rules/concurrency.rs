//! How many Graph API calls a sender keeps open, and how many of its
//! messages a worker holds in memory: both follow from the rate and from
//! how long Meta takes to answer (Little's law: calls in flight = rate ×
//! answer time), so that a sender reaches its rate whether Meta answers in
//! 20 ms or 1.5 s, and a slow sender holds little.

use std::time::Duration;

/// Calls in flight beyond rate × answer time, for jitter in both.
const IN_FLIGHT_HEADROOM: f64 = 1.25;

/// Answers the fastest answer is taken from: it is the fastest of the last
/// `FASTEST_OVER` to `2 × FASTEST_OVER` answers, so that it follows a Meta
/// that became slower within a few hundred calls.
const FASTEST_OVER: u32 = 128;

/// A recent estimate of Meta's answer time: quick to rise (a slow Meta
/// starves the sender at once), slow to fall (one quick answer does not
/// mean the rest will be). It also keeps the fastest recent answer: what
/// any call takes at least (the network both ways and Meta's own work), so
/// that the rest of a call's answer time is delay that may have come
/// before the call reached Meta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerTime {
    seconds: f64,
    observed: bool,
    fastest_before: Option<Duration>,
    fastest_now: Option<Duration>,
    answers_now: u32,
}

impl Default for AnswerTime {
    /// Before any answer: a fast Graph API (and one call in flight anyway,
    /// while the sender probes).
    fn default() -> Self {
        Self {
            seconds: 0.05,
            observed: false,
            fastest_before: None,
            fastest_now: None,
            answers_now: 0,
        }
    }
}

impl AnswerTime {
    /// The first answer is taken as it is: there is nothing to weigh it against.
    pub fn observe(&mut self, took: Duration) {
        self.fastest_now = Some(self.fastest_now.map_or(took, |fastest| fastest.min(took)));
        self.answers_now += 1;
        if self.answers_now >= FASTEST_OVER {
            self.fastest_before = self.fastest_now.take();
            self.answers_now = 0;
        }
        let sample = took.as_secs_f64();
        if !self.observed {
            self.observed = true;
            self.seconds = sample;
            return;
        }
        let weight = if sample > self.seconds { 0.5 } else { 0.05 };
        self.seconds += weight * (sample - self.seconds);
    }

    pub fn get(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0))
    }

    /// The fastest of the recent answers (zero before any: then every call
    /// may have been held up for as long as it took).
    pub fn fastest(&self) -> Duration {
        [self.fastest_before, self.fastest_now]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::ZERO)
    }
}

/// Calls a sender at `rate` per second keeps open when Meta answers in
/// `answer`: enough for the rate, with headroom, never above `most`.
pub fn calls_in_flight(rate: u32, answer: Duration, most: usize) -> usize {
    let needed = (f64::from(rate) * answer.as_secs_f64() * IN_FLIGHT_HEADROOM).ceil();
    let needed = if needed.is_finite() {
        needed as usize
    } else {
        most
    };
    needed.saturating_add(2).clamp(1, most.max(1))
}

/// Messages of one priority a worker holds in memory for a sender at
/// `rate`: what is in flight plus half a second of sending, at least 16,
/// never above `most`.
pub fn read_ahead(rate: u32, answer: Duration, most: usize) -> usize {
    let half_second = usize::try_from(rate / 2).unwrap_or(usize::MAX);
    calls_in_flight(rate, answer, usize::MAX)
        .saturating_add(half_second)
        .max(16)
        .min(most.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOST: usize = 4096;

    #[test]
    fn calls_in_flight_follow_rate_times_answer_time() {
        assert_eq!(calls_in_flight(70, Duration::from_millis(20), MOST), 4);
        assert_eq!(calls_in_flight(70, Duration::from_millis(400), MOST), 37);
        assert_eq!(calls_in_flight(70, Duration::from_millis(1500), MOST), 134);
        assert_eq!(calls_in_flight(875, Duration::from_millis(400), MOST), 440);
        assert_eq!(calls_in_flight(875, Duration::from_secs(10), 64), 64);
        assert_eq!(calls_in_flight(70, Duration::ZERO, MOST), 2);
        assert_eq!(calls_in_flight(70, Duration::from_secs(1), 0), 1);
    }

    #[test]
    fn read_ahead_covers_what_is_in_flight() {
        assert_eq!(read_ahead(70, Duration::from_millis(5), 256), 3 + 35);
        assert!(read_ahead(70, Duration::from_millis(1500), 1024) >= 134 + 35);
        assert_eq!(read_ahead(1000, Duration::from_millis(1500), 256), 256);
        assert_eq!(read_ahead(1, Duration::ZERO, 256), 16);
    }

    #[test]
    fn the_fastest_answer_follows_a_meta_that_became_slower() {
        let mut answer = AnswerTime::default();
        assert_eq!(answer.fastest(), Duration::ZERO);
        answer.observe(Duration::from_millis(30));
        answer.observe(Duration::from_millis(5));
        answer.observe(Duration::from_millis(80));
        assert_eq!(answer.fastest(), Duration::from_millis(5));
        for _ in 0..2 * FASTEST_OVER {
            answer.observe(Duration::from_millis(400));
        }
        assert_eq!(answer.fastest(), Duration::from_millis(400));
        answer.observe(Duration::from_millis(20));
        assert_eq!(answer.fastest(), Duration::from_millis(20));
    }

    #[test]
    fn the_answer_time_rises_fast_and_falls_slowly() {
        let mut answer = AnswerTime::default();
        for _ in 0..4 {
            answer.observe(Duration::from_millis(1500));
        }
        assert!(
            answer.get() > Duration::from_millis(1300),
            "{:?}",
            answer.get()
        );
        answer.observe(Duration::from_millis(10));
        assert!(
            answer.get() > Duration::from_millis(1200),
            "{:?}",
            answer.get()
        );
        for _ in 0..200 {
            answer.observe(Duration::from_millis(10));
        }
        assert!(
            answer.get() < Duration::from_millis(20),
            "{:?}",
            answer.get()
        );
    }
}
