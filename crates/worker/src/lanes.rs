//! A sender's messages in memory, one first-in-first-out lane per
//! recipient, and which lane may go next. Pure data: the dispatcher decides
//! when to send, this only keeps order.
//!
//! Guarantees: a recipient has at most one message in flight and its
//! messages leave in the order they were pushed (a retried message goes back
//! to the front of its lane); a lane that must wait (pair limit, backoff)
//! never holds up another lane.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

pub(crate) struct Lanes<T> {
    lanes: HashMap<String, Lane<T>>,
    /// (when, tie-breaker, recipient); an entry is live only if it matches
    /// the lane's `scheduled_at`, so rescheduling needs no removal.
    ready: BinaryHeap<Reverse<(Instant, u64, String)>>,
    sequence: u64,
}

struct Lane<T> {
    waiting: VecDeque<(T, Instant)>,
    in_flight: bool,
    scheduled_at: Option<Instant>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            ready: BinaryHeap::new(),
            sequence: 0,
        }
    }
}

impl<T> Lanes<T> {
    /// No message is held, waiting or in flight.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Appends a message to its recipient's lane; it may go at `not_before`.
    pub fn push(&mut self, recipient: &str, item: T, not_before: Instant) {
        let lane = self
            .lanes
            .entry(recipient.to_owned())
            .or_insert_with(|| Lane {
                // Most recipients have one message waiting: room for exactly that.
                waiting: VecDeque::with_capacity(1),
                in_flight: false,
                scheduled_at: None,
            });
        lane.waiting.push_back((item, not_before));
        if !lane.in_flight && lane.waiting.len() == 1 {
            self.schedule(recipient, not_before);
        }
    }

    /// The recipient whose head message may go at `now`, if any; its lane
    /// stays blocked until [`take`](Self::take) or [`defer`](Self::defer).
    pub fn next_ready(&mut self, now: Instant) -> Option<String> {
        while let Some(Reverse((at, _, recipient))) = self.ready.peek() {
            if *at > now {
                return None;
            }
            let at = *at;
            let recipient = recipient.clone();
            self.ready.pop();
            let live = self
                .lanes
                .get_mut(&recipient)
                .is_some_and(|lane| !lane.in_flight && lane.scheduled_at == Some(at));
            if live {
                if let Some(lane) = self.lanes.get_mut(&recipient) {
                    lane.scheduled_at = None;
                }
                return Some(recipient);
            }
        }
        None
    }

    /// When the next lane becomes ready.
    pub fn next_wake(&self) -> Option<Instant> {
        self.ready.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The recipient's head message must wait until `until`.
    pub fn defer(&mut self, recipient: &str, until: Instant) {
        self.schedule(recipient, until);
    }

    /// Takes the recipient's head message to send it; the lane is blocked
    /// until [`done`](Self::done) or [`put_back`](Self::put_back).
    pub fn take(&mut self, recipient: &str) -> Option<T> {
        let lane = self.lanes.get_mut(recipient)?;
        let (item, _) = lane.waiting.pop_front()?;
        lane.in_flight = true;
        lane.scheduled_at = None;
        Some(item)
    }

    /// The message taken from this lane is finished; the next one may go.
    pub fn done(&mut self, recipient: &str, now: Instant) {
        let Some(lane) = self.lanes.get_mut(recipient) else {
            return;
        };
        lane.in_flight = false;
        match lane.waiting.front() {
            Some((_, not_before)) => {
                let at = (*not_before).max(now);
                self.schedule(recipient, at);
            }
            None => {
                self.lanes.remove(recipient);
            }
        }
    }

    /// The message taken from this lane goes back to its front, to be tried
    /// again at `not_before`.
    pub fn put_back(&mut self, recipient: &str, item: T, not_before: Instant) {
        let Some(lane) = self.lanes.get_mut(recipient) else {
            return;
        };
        lane.in_flight = false;
        lane.waiting.push_front((item, not_before));
        self.schedule(recipient, not_before);
    }

    fn schedule(&mut self, recipient: &str, at: Instant) {
        if let Some(lane) = self.lanes.get_mut(recipient) {
            lane.scheduled_at = Some(at);
            self.sequence += 1;
            self.ready
                .push(Reverse((at, self.sequence, recipient.to_owned())));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn drain_order(lanes: &mut Lanes<u32>, now: Instant) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        while let Some(recipient) = lanes.next_ready(now) {
            let item = lanes.take(&recipient).expect("head");
            out.push((recipient.clone(), item));
            lanes.done(&recipient, now);
        }
        out
    }

    #[test]
    fn one_recipients_messages_keep_their_order() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        for i in 0..5 {
            lanes.push("a", i, now);
        }
        let sent: Vec<u32> = drain_order(&mut lanes, now)
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        assert_eq!(sent, [0, 1, 2, 3, 4]);
        assert!(lanes.is_empty());
    }

    #[test]
    fn a_recipient_has_one_message_in_flight() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        lanes.push("a", 1, now);
        lanes.push("a", 2, now);
        let recipient = lanes.next_ready(now).expect("ready");
        assert_eq!(lanes.take(&recipient), Some(1));
        assert_eq!(
            lanes.next_ready(now),
            None,
            "the second waits for the first"
        );
        lanes.done("a", now);
        assert_eq!(lanes.next_ready(now).as_deref(), Some("a"));
    }

    #[test]
    fn a_waiting_lane_does_not_hold_up_others() {
        let now = Instant::now();
        let later = now + Duration::from_secs(6);
        let mut lanes = Lanes::default();
        lanes.push("slow", 1, now);
        lanes.push("fast", 2, now);
        let first = lanes.next_ready(now).expect("ready");
        assert_eq!(first, "slow");
        lanes.defer("slow", later);
        assert_eq!(lanes.next_ready(now).as_deref(), Some("fast"));
        assert_eq!(lanes.next_ready(now), None);
        assert_eq!(lanes.next_wake(), Some(later));
        assert_eq!(lanes.next_ready(later).as_deref(), Some("slow"));
    }

    #[test]
    fn a_retried_message_goes_first_again() {
        let now = Instant::now();
        let retry_at = now + Duration::from_secs(2);
        let mut lanes = Lanes::default();
        lanes.push("a", 1, now);
        lanes.push("a", 2, now);
        let recipient = lanes.next_ready(now).expect("ready");
        let item = lanes.take(&recipient).expect("head");
        lanes.put_back(&recipient, item, retry_at);
        assert_eq!(lanes.next_ready(now), None);
        let order: Vec<u32> = drain_order(&mut lanes, retry_at)
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        assert_eq!(order, [1, 2]);
    }

    #[test]
    fn not_before_is_respected_and_a_message_in_flight_is_held() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        lanes.push("a", 1, now + Duration::from_secs(1));
        assert_eq!(lanes.next_ready(now), None);
        let recipient = lanes
            .next_ready(now + Duration::from_secs(1))
            .expect("ready");
        lanes.take(&recipient);
        assert!(!lanes.is_empty());
        lanes.done(&recipient, now);
        assert!(lanes.is_empty());
    }
}
