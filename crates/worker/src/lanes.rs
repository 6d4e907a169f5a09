//! A sender's messages in memory, one lane per recipient in the order the
//! messages were accepted, and which lane may go next. Pure data: the
//! sender's state machine decides when to send, this only keeps order.
//!
//! Guarantees: a recipient has at most one message in flight and its
//! messages leave in the order of their stream entry ids, however they
//! arrived (read, taken over, unparked, or retried: a retried message goes
//! back to the front); a lane that must wait (pair limit, backoff) never
//! holds up another lane.

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
    /// Oldest first.
    waiting: VecDeque<Waiting<T>>,
    in_flight: bool,
    scheduled_at: Option<Instant>,
}

struct Waiting<T> {
    order: EntryOrder,
    item: T,
    not_before: Instant,
}

/// A stream entry id (`<ms>-<seq>`) as numbers, for ordering; entries of
/// one stream are in acceptance order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct EntryOrder(u64, u64);

impl EntryOrder {
    /// An id that does not parse sorts first (it cannot be ordered, and
    /// holding it back would hold up the lane).
    pub fn of(entry_id: &str) -> Self {
        let (ms, seq) = entry_id.split_once('-').unwrap_or((entry_id, "0"));
        Self(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    }
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

    /// Adds a message to its recipient's lane, in entry order; it may go at
    /// `not_before`.
    pub fn push(&mut self, recipient: &str, item: T, not_before: Instant, order: EntryOrder) {
        let lane = self
            .lanes
            .entry(recipient.to_owned())
            .or_insert_with(|| Lane {
                // Most recipients have one message waiting: room for exactly that.
                waiting: VecDeque::with_capacity(1),
                in_flight: false,
                scheduled_at: None,
            });
        let at = lane.waiting.partition_point(|w| w.order <= order);
        lane.waiting.insert(
            at,
            Waiting {
                order,
                item,
                not_before,
            },
        );
        if !lane.in_flight && at == 0 {
            self.schedule(recipient, not_before);
        }
    }

    /// Whether some lane may go at `now`.
    pub fn has_ready(&mut self, now: Instant) -> bool {
        while let Some(Reverse((at, _, recipient))) = self.ready.peek() {
            if *at > now {
                return false;
            }
            let live = self
                .lanes
                .get(recipient)
                .is_some_and(|lane| !lane.in_flight && lane.scheduled_at == Some(*at));
            if live {
                return true;
            }
            self.ready.pop();
        }
        false
    }

    /// The head message of a recipient's lane, if one waits.
    pub fn head(&self, recipient: &str) -> Option<&T> {
        self.lanes
            .get(recipient)
            .and_then(|lane| lane.waiting.front())
            .map(|w| &w.item)
    }

    /// Takes every waiting message of a recipient out (to park them),
    /// oldest first; a message in flight stays.
    pub fn take_waiting(&mut self, recipient: &str) -> Vec<T> {
        let Some(lane) = self.lanes.get_mut(recipient) else {
            return Vec::new();
        };
        let taken = lane.waiting.drain(..).map(|w| w.item).collect();
        lane.scheduled_at = None;
        if !lane.in_flight {
            self.lanes.remove(recipient);
        }
        taken
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
        let item = lane.waiting.pop_front()?.item;
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
            Some(head) => {
                let at = head.not_before.max(now);
                self.schedule(recipient, at);
            }
            None => {
                self.lanes.remove(recipient);
            }
        }
    }

    /// The message taken from this lane goes back in its place (the front),
    /// to be tried again at `not_before`.
    pub fn put_back(&mut self, recipient: &str, item: T, not_before: Instant, order: EntryOrder) {
        if let Some(lane) = self.lanes.get_mut(recipient) {
            lane.in_flight = false;
        }
        self.push(recipient, item, not_before, order);
        self.schedule_head(recipient);
    }

    /// (Re)schedules a lane for its head's `not_before`.
    fn schedule_head(&mut self, recipient: &str) {
        let head = self
            .lanes
            .get(recipient)
            .filter(|lane| !lane.in_flight)
            .and_then(|lane| lane.waiting.front())
            .map(|w| w.not_before);
        if let Some(at) = head {
            self.schedule(recipient, at);
        }
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

    fn order(i: u32) -> EntryOrder {
        EntryOrder(u64::from(i), 0)
    }

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
            lanes.push("a", i, now, order(i));
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
        lanes.push("a", 1, now, order(1));
        lanes.push("a", 2, now, order(2));
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
        lanes.push("slow", 1, now, order(1));
        lanes.push("fast", 2, now, order(2));
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
        lanes.push("a", 1, now, order(1));
        lanes.push("a", 2, now, order(2));
        let recipient = lanes.next_ready(now).expect("ready");
        let item = lanes.take(&recipient).expect("head");
        lanes.put_back(&recipient, item, retry_at, order(item));
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
        lanes.push("a", 1, now + Duration::from_secs(1), order(1));
        assert_eq!(lanes.next_ready(now), None);
        let recipient = lanes
            .next_ready(now + Duration::from_secs(1))
            .expect("ready");
        lanes.take(&recipient);
        assert!(!lanes.is_empty());
        lanes.done(&recipient, now);
        assert!(lanes.is_empty());
    }

    #[test]
    fn messages_arriving_out_of_order_leave_in_entry_order() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        for i in [3, 1, 2] {
            lanes.push("a", i, now, order(i));
        }
        let sent: Vec<u32> = drain_order(&mut lanes, now)
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        assert_eq!(sent, [1, 2, 3]);
        assert_eq!(
            EntryOrder::of("1700000000000-10"),
            EntryOrder(1_700_000_000_000, 10)
        );
        assert!(EntryOrder::of("5-9") < EntryOrder::of("5-10"));
    }

    #[test]
    fn waiting_messages_are_taken_out_to_park_and_one_in_flight_stays() {
        let now = Instant::now();
        let mut lanes = Lanes::default();
        for i in 1..=3 {
            lanes.push("a", i, now, order(i));
        }
        lanes.push("b", 9, now, order(9));
        let recipient = lanes.next_ready(now).expect("ready");
        assert_eq!(recipient, "a");
        assert_eq!(lanes.take("a"), Some(1));
        assert_eq!(lanes.take_waiting("a"), [2, 3]);
        assert!(lanes.has_ready(now), "b is still ready");
        lanes.done("a", now);
        assert_eq!(drain_order(&mut lanes, now), [("b".to_owned(), 9)]);
        assert!(lanes.is_empty());
    }
}
