//! A rate shared by several senders: at most `limit` sends in any window,
//! summed over all of them (a WABA's `rate_per_second`, over its numbers),
//! with the slots shared fairly while the senders contend for them.
//!
//! The window is a [`SendWindow`], so the sum is exact in the same way a
//! single sender's rate is. Fairness: when a slot frees up, a member that
//! has been waiting for it goes before one with more sends in the window
//! (then the one that has waited longest). Without that the member whose
//! timer happens to fire first would take every slot and starve the
//! others. A member that stops asking (its queue ran dry, it paused, it
//! left) stops counting as waiting once its announced retry is
//! [`STALE_AFTER`] past, so it never holds a slot nobody takes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rules::SendWindow;

/// A member that must let another go first tries again this much later:
/// enough for the one it yields to to take the slot.
pub const YIELD: Duration = Duration::from_millis(2);

/// A waiting member that has not come back this long after its announced
/// retry no longer wants the slot.
pub const STALE_AFTER: Duration = Duration::from_millis(20);

/// One sender's place in a [`SharedRate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberId(usize);

#[derive(Debug, Default)]
struct Member {
    present: bool,
    /// This member's sends still in the window, oldest first.
    sends: VecDeque<Instant>,
    /// Since when it has waited for a slot, and when it said it would try
    /// again; `None` while it is not waiting.
    waiting: Option<(Instant, Instant)>,
}

/// At most `limit` sends in any `window` over all members, shared fairly.
#[derive(Debug)]
pub struct SharedRate {
    window: SendWindow,
    members: Vec<Member>,
}

impl SharedRate {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            window: SendWindow::new(limit, window),
            members: Vec::new(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.window.limit()
    }

    /// A new member (a sender starting to send under the shared rate).
    pub fn join(&mut self) -> MemberId {
        let index = match self.members.iter().position(|m| !m.present) {
            Some(free) => free,
            None => {
                self.members.push(Member::default());
                self.members.len() - 1
            }
        };
        self.members[index] = Member {
            present: true,
            ..Member::default()
        };
        MemberId(index)
    }

    /// The member stopped: it no longer waits. Its sends stay in the
    /// window.
    pub fn leave(&mut self, member: MemberId) {
        if let Some(m) = self.members.get_mut(member.0) {
            *m = Member::default();
        }
    }

    /// Sends made before this owner took the shared rate over (handover).
    pub fn seed(&mut self, earlier_sends: impl IntoIterator<Item = Instant>) {
        self.window.seed(earlier_sends);
    }

    /// When `member`, ready to send at `ready_at` as far as its own limits
    /// go, may take a slot: `now` when it may take one now. A later answer
    /// records the member as waiting until then.
    pub fn next_allowed(&mut self, member: MemberId, now: Instant, ready_at: Instant) -> Instant {
        let mut at = self.window.next_allowed(now).max(ready_at);
        if at <= now && self.another_goes_first(member, now) {
            at = now + YIELD;
        }
        if at > now
            && let Some(m) = self.members.get_mut(member.0)
        {
            let since = m.waiting.map_or(now, |(since, _)| since);
            m.waiting = Some((since, at));
        }
        at
    }

    /// Takes a slot for `member` at `now`, or says when to ask again.
    pub fn try_acquire(&mut self, member: MemberId, now: Instant) -> Result<(), Instant> {
        let at = self.next_allowed(member, now, now);
        if at > now {
            return Err(at);
        }
        self.window.try_acquire(now)?;
        if let Some(m) = self.members.get_mut(member.0) {
            m.waiting = None;
            m.sends.push_back(now);
        }
        Ok(())
    }

    /// A send recorded at `recorded` left only at `left`: the window counts
    /// it from then (see [`SendWindow::delay`]).
    pub fn delay(&mut self, recorded: Instant, left: Instant) {
        self.window.delay(recorded, left);
    }

    /// `member`'s send recorded at `recorded` never reached Meta: the
    /// slot is free again (see [`SendWindow::give_back`]).
    pub fn give_back(&mut self, member: MemberId, recorded: Instant) {
        self.window.give_back(recorded);
        if let Some(m) = self.members.get_mut(member.0)
            && let Some(index) = m.sends.iter().position(|send| *send == recorded)
        {
            m.sends.remove(index);
        }
    }

    /// The sends in the window, oldest first (for the next owner).
    pub fn recent(&self) -> impl Iterator<Item = Instant> + '_ {
        self.window.recent()
    }

    /// Whether another member waiting for a slot now should take it before
    /// `member`: it has fewer sends in the window, or as many and has
    /// waited longer.
    fn another_goes_first(&mut self, member: MemberId, now: Instant) -> bool {
        let window = self.window.window();
        for m in &mut self.members {
            while m
                .sends
                .front()
                .is_some_and(|sent| now.saturating_duration_since(*sent) >= window)
            {
                m.sends.pop_front();
            }
        }
        let Some(me) = self.members.get(member.0) else {
            return false;
        };
        let my_turn = (me.sends.len(), me.waiting.map_or(now, |(since, _)| since));
        self.members.iter().enumerate().any(|(index, other)| {
            index != member.0
                && other.waiting.is_some_and(|(since, retry_at)| {
                    retry_at <= now + YIELD
                        && now <= retry_at + STALE_AFTER
                        && (other.sends.len(), since) < my_turn
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(1);

    /// Three members that always have something to send, each trying when
    /// told, in a fixed order that favours the first at every instant;
    /// returns each one's sends and all send times.
    fn contend(members: usize, limit: u32, for_how_long: Duration) -> (Vec<usize>, Vec<Instant>) {
        let t0 = Instant::now();
        let mut rate = SharedRate::new(limit, WINDOW);
        let ids: Vec<MemberId> = (0..members).map(|_| rate.join()).collect();
        let mut next_try = vec![t0; members];
        let mut sent = vec![0; members];
        let mut times = Vec::new();
        loop {
            let now = *next_try.iter().min().expect("members");
            if now > t0 + for_how_long {
                break;
            }
            // Always the lowest index first among those due: the unfair order.
            for (index, id) in ids.iter().enumerate() {
                if next_try[index] != now {
                    continue;
                }
                match rate.try_acquire(*id, now) {
                    Ok(()) => {
                        sent[index] += 1;
                        times.push(now);
                        next_try[index] = now;
                        // Its own pacing: not again at the same instant.
                        next_try[index] += Duration::from_millis(1);
                    }
                    Err(at) => next_try[index] = at,
                }
            }
        }
        (sent, times)
    }

    fn most_in_a_window(times: &[Instant]) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn members_share_the_limit_fairly_and_never_exceed_it_together() {
        let (sent, times) = contend(3, 70, Duration::from_secs(10));
        assert!(
            most_in_a_window(&times) <= 70,
            "never more than 70 together"
        );
        let total: usize = sent.iter().sum();
        assert!(total >= 700, "the limit is used: {total}");
        for each in &sent {
            assert!(
                (*each as f64) >= total as f64 / 3.0 * 0.9,
                "each gets about a third: {sent:?}"
            );
        }
    }

    #[test]
    fn a_member_that_stops_asking_does_not_hold_a_slot() {
        let t0 = Instant::now();
        let mut rate = SharedRate::new(1, WINDOW);
        let (a, b) = (rate.join(), rate.join());
        rate.try_acquire(a, t0).expect("free");
        // Both wait for the next slot; b has sent less and would go first.
        let slot = rate.try_acquire(b, t0).expect_err("full");
        assert_eq!(slot, t0 + WINDOW);
        assert_eq!(rate.try_acquire(a, slot), Err(slot + YIELD), "b goes first");
        // b never comes back: once its retry is stale, a takes the slot.
        let later = slot + STALE_AFTER + Duration::from_millis(1);
        assert_eq!(rate.try_acquire(a, later), Ok(()));
    }

    #[test]
    fn a_member_that_leaves_stops_waiting_and_its_sends_still_count() {
        let t0 = Instant::now();
        let mut rate = SharedRate::new(2, WINDOW);
        let (a, b) = (rate.join(), rate.join());
        rate.try_acquire(a, t0).expect("free");
        rate.try_acquire(a, t0).expect("free");
        let _ = rate.try_acquire(b, t0);
        rate.leave(b);
        let c = rate.join();
        assert_eq!(rate.try_acquire(c, t0), Err(t0 + WINDOW), "a's sends count");
        assert_eq!(rate.try_acquire(a, t0 + WINDOW), Err(t0 + WINDOW + YIELD));
        assert_eq!(rate.try_acquire(c, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn a_send_given_back_frees_its_place() {
        let t0 = Instant::now();
        let mut rate = SharedRate::new(2, WINDOW);
        let (a, b) = (rate.join(), rate.join());
        rate.try_acquire(a, t0).expect("free");
        rate.try_acquire(a, t0).expect("free");
        assert_eq!(rate.try_acquire(b, t0), Err(t0 + WINDOW));
        rate.give_back(a, t0);
        assert_eq!(rate.try_acquire(b, t0), Ok(()), "a's place went back");
        // Unknown sends change nothing.
        rate.give_back(a, t0 + Duration::from_millis(5));
        assert_eq!(rate.try_acquire(a, t0), Err(t0 + WINDOW));
    }

    #[test]
    fn a_handed_over_window_counts_for_the_new_owner() {
        let t0 = Instant::now();
        let mut rate = SharedRate::new(2, WINDOW);
        rate.seed([t0, t0 + Duration::from_millis(10)]);
        let a = rate.join();
        assert_eq!(
            rate.try_acquire(a, t0 + Duration::from_millis(20)),
            Err(t0 + WINDOW)
        );
    }

    #[test]
    fn a_member_not_ready_yet_does_not_block_one_that_is() {
        let t0 = Instant::now();
        let mut rate = SharedRate::new(10, WINDOW);
        let (a, b) = (rate.join(), rate.join());
        // a waits for its own limits, 500 ms from now.
        assert_eq!(
            rate.next_allowed(a, t0, t0 + Duration::from_millis(500)),
            t0 + Duration::from_millis(500)
        );
        rate.try_acquire(b, t0).expect("b goes now");
    }
}
