//! Admission control: whether `/send` takes a new message for a sender, from
//! how long it would wait in line. A queue that only grows turns every
//! message in it stale (a one-time code that arrives after an hour), so the
//! gateway says "not now" (`429 queue_full`) while the caller can still
//! act, as Twilio does past 4 h.
//!
//! The predicted wait is what is queued ahead of the new message divided by
//! the rate the sender achieves now (its owner's rate after a 130429 and the
//! throughput tier). Transactional messages wait behind transactional ones
//! only; bulk ones behind both.

use std::time::Duration;

use crate::Lane;

/// What a sender has in line, and how fast it goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderLoad {
    /// Transactional messages not yet done (waiting, in flight or parked).
    pub transactional: u64,
    /// Bulk messages not yet done.
    pub bulk: u64,
    /// Messages per second the sender keeps now (at least 1).
    pub rate: u32,
}

impl SenderLoad {
    /// How long a message queued now in `lane` waits for those ahead of it.
    pub fn predicted_wait(&self, lane: Lane) -> Duration {
        let ahead = match lane {
            Lane::Bulk => self.transactional.saturating_add(self.bulk),
            Lane::Transactional | Lane::Scheduled => self.transactional,
        };
        Duration::from_secs_f64(ahead as f64 / f64::from(self.rate.max(1)))
    }

    /// The same load with `count` more messages in `lane`.
    pub fn with_queued(mut self, lane: Lane, count: u64) -> Self {
        match lane {
            Lane::Bulk => self.bulk = self.bulk.saturating_add(count),
            Lane::Transactional | Lane::Scheduled => {
                self.transactional = self.transactional.saturating_add(count);
            }
        }
        self
    }
}

/// Why a message is not taken now; either way, `retry_after` is when those
/// ahead of it now will have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The wait is over the sender's `max_queue_seconds` for the priority.
    QueueFull {
        predicted_wait: Duration,
        max_wait: Duration,
    },
    /// The message's `expires_at` would pass before its turn.
    ExpiresFirst {
        predicted_wait: Duration,
        expires_in: Duration,
    },
}

impl Refusal {
    pub fn predicted_wait(&self) -> Duration {
        match *self {
            Self::QueueFull { predicted_wait, .. } | Self::ExpiresFirst { predicted_wait, .. } => {
                predicted_wait
            }
        }
    }

    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        self.predicted_wait().as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Whether a message for `lane` is admitted. `expires_in` is the time left
/// until its `expires_at`, if it has one. A scheduled message is not judged
/// here: it joins the line only at its `send_after`.
pub fn admit(
    load: &SenderLoad,
    lane: Lane,
    max_wait: Duration,
    expires_in: Option<Duration>,
) -> Result<(), Refusal> {
    if lane == Lane::Scheduled {
        return Ok(());
    }
    let predicted_wait = load.predicted_wait(lane);
    if predicted_wait > max_wait {
        return Err(Refusal::QueueFull {
            predicted_wait,
            max_wait,
        });
    }
    if let Some(expires_in) = expires_in
        && predicted_wait > expires_in
    {
        return Err(Refusal::ExpiresFirst {
            predicted_wait,
            expires_in,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(transactional: u64, bulk: u64, rate: u32) -> SenderLoad {
        SenderLoad {
            transactional,
            bulk,
            rate,
        }
    }

    const FIVE_S: Duration = Duration::from_secs(5);

    #[test]
    fn the_wait_is_what_is_ahead_over_the_rate_and_bulk_waits_behind_both() {
        let l = load(100, 400, 10);
        assert_eq!(
            l.predicted_wait(Lane::Transactional),
            Duration::from_secs(10)
        );
        assert_eq!(l.predicted_wait(Lane::Bulk), Duration::from_secs(50));
        // A sender with no rate known yet is not divided by zero.
        assert_eq!(
            load(3, 0, 0).predicted_wait(Lane::Transactional),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn a_wait_over_the_priority_s_maximum_is_refused_with_the_wait() {
        let refusal =
            admit(&load(100, 0, 10), Lane::Transactional, FIVE_S, None).expect_err("10 s > 5 s");
        assert_eq!(
            refusal,
            Refusal::QueueFull {
                predicted_wait: Duration::from_secs(10),
                max_wait: FIVE_S
            }
        );
        assert_eq!(refusal.retry_after_seconds(), 10);
        // Exactly at the maximum is still taken; a bulk backlog does not
        // hold up transactional messages.
        assert!(admit(&load(50, 0, 10), Lane::Transactional, FIVE_S, None).is_ok());
        assert!(admit(&load(0, 10_000, 10), Lane::Transactional, FIVE_S, None).is_ok());
        assert!(admit(&load(0, 51, 10), Lane::Bulk, FIVE_S, None).is_err());
    }

    #[test]
    fn a_message_that_would_expire_in_line_is_refused() {
        let l = load(20, 0, 10);
        assert_eq!(
            admit(
                &l,
                Lane::Transactional,
                FIVE_S,
                Some(Duration::from_secs(1))
            ),
            Err(Refusal::ExpiresFirst {
                predicted_wait: Duration::from_secs(2),
                expires_in: Duration::from_secs(1)
            })
        );
        assert!(
            admit(
                &l,
                Lane::Transactional,
                FIVE_S,
                Some(Duration::from_secs(3))
            )
            .is_ok()
        );
        // An empty line never refuses, whatever the expiry.
        assert!(
            admit(
                &load(0, 0, 10),
                Lane::Transactional,
                FIVE_S,
                Some(Duration::ZERO)
            )
            .is_ok()
        );
    }

    #[test]
    fn scheduled_messages_join_the_line_later_and_are_not_judged_now() {
        assert!(admit(&load(1_000_000, 0, 1), Lane::Scheduled, FIVE_S, None).is_ok());
    }

    #[test]
    fn retry_after_is_a_whole_second_at_least() {
        let refusal = Refusal::ExpiresFirst {
            predicted_wait: Duration::from_millis(100),
            expires_in: Duration::from_millis(50),
        };
        assert_eq!(refusal.retry_after_seconds(), 1);
        let refusal = Refusal::QueueFull {
            predicted_wait: Duration::from_millis(5_100),
            max_wait: FIVE_S,
        };
        assert_eq!(refusal.retry_after_seconds(), 6);
    }
}
