//! The timed queue of webhook work: events waiting for their moment and
//! POSTs waiting for their next attempt, ordered by due time (ties in order
//! of scheduling).
//!
//! The send path only pushes under a short lock and never waits, so a slow
//! or dead webhook receiver cannot slow sends down. The queue is bounded:
//! beyond `capacity` new work is refused (and counted by the caller).
//! The delivery loop is woken only when new work is due before the moment it
//! already planned to wake at, so a busy send path does not spin it.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::locks::lock;

#[derive(Debug)]
struct Due<T> {
    at: Instant,
    order: u64,
    item: T,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl<T> Eq for Due<T> {}

impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Due<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

#[derive(Debug)]
struct Queue<T> {
    heap: BinaryHeap<Reverse<Due<T>>>,
    next_order: u64,
    /// When the delivery loop will next look; `None` while it sleeps with
    /// nothing planned.
    wake_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Outbox<T> {
    capacity: usize,
    queue: Mutex<Queue<T>>,
    wake: Notify,
}

impl<T> Outbox<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                next_order: 0,
                wake_at: None,
            }),
            wake: Notify::new(),
        }
    }

    /// Schedules `item` for `at`; false (and nothing queued) when full.
    pub(crate) fn push(&self, at: Instant, item: T) -> bool {
        let mut queue = lock(&self.queue);
        if queue.heap.len() >= self.capacity {
            return false;
        }
        let order = queue.next_order;
        queue.next_order += 1;
        queue.heap.push(Reverse(Due { at, order, item }));
        if queue.wake_at.is_none_or(|wake_at| at < wake_at) {
            queue.wake_at = Some(at);
            self.wake.notify_one();
        }
        true
    }

    /// Removes up to `max` items due at `now`, in order, and returns them
    /// with the due time of the next one. Also records that time as when the
    /// caller will look again.
    pub(crate) fn take_due(&self, now: Instant, max: usize) -> (Vec<T>, Option<Instant>) {
        let mut queue = lock(&self.queue);
        let mut due = Vec::new();
        while due.len() < max {
            match queue.heap.peek() {
                Some(Reverse(next)) if next.at <= now => {}
                _ => break,
            }
            if let Some(Reverse(next)) = queue.heap.pop() {
                due.push(next.item);
            }
        }
        let next = queue.heap.peek().map(|Reverse(next)| next.at);
        queue.wake_at = next;
        (due, next)
    }

    /// Resolves when something was pushed that is due before the time the
    /// last `take_due` returned.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    pub(crate) fn clear(&self) {
        let mut queue = lock(&self.queue);
        queue.heap = BinaryHeap::new();
        queue.wake_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_come_out_by_due_time_then_by_order_of_scheduling() {
        let t0 = Instant::now();
        let outbox = Outbox::new(10);
        assert!(outbox.push(t0 + Duration::from_millis(20), "c"));
        assert!(outbox.push(t0 + Duration::from_millis(10), "a"));
        assert!(outbox.push(t0 + Duration::from_millis(10), "b"));
        assert!(outbox.push(t0 + Duration::from_millis(30), "d"));
        let (due, next) = outbox.take_due(t0 + Duration::from_millis(20), 100);
        assert_eq!(due, ["a", "b", "c"]);
        assert_eq!(next, Some(t0 + Duration::from_millis(30)));
        let (due, next) = outbox.take_due(t0 + Duration::from_millis(20), 100);
        assert!(due.is_empty());
        assert_eq!(next, Some(t0 + Duration::from_millis(30)));
    }

    #[test]
    fn take_due_stops_at_max() {
        let t0 = Instant::now();
        let outbox = Outbox::new(10);
        for i in 0..5 {
            outbox.push(t0, i);
        }
        assert_eq!(outbox.take_due(t0, 2), (vec![0, 1], Some(t0)));
        assert_eq!(outbox.take_due(t0, 10).0, [2, 3, 4]);
    }

    #[test]
    fn a_full_outbox_refuses_and_clear_empties_it() {
        let t0 = Instant::now();
        let outbox = Outbox::new(2);
        assert!(outbox.push(t0, 1));
        assert!(outbox.push(t0, 2));
        assert!(!outbox.push(t0, 3));
        outbox.clear();
        assert!(outbox.push(t0, 4));
        assert_eq!(outbox.take_due(t0, 10).0, [4]);
    }

    #[tokio::test]
    async fn earlier_work_wakes_the_loop_and_later_work_does_not() {
        let t0 = Instant::now();
        let outbox = Outbox::new(10);
        outbox.push(t0 + Duration::from_secs(10), 1);
        outbox.woken().await; // the first push into an idle outbox wakes
        let (_, next) = outbox.take_due(t0, 10);
        assert_eq!(next, Some(t0 + Duration::from_secs(10)));

        outbox.push(t0 + Duration::from_secs(20), 2);
        let later = tokio::time::timeout(Duration::from_millis(20), outbox.woken()).await;
        assert!(
            later.is_err(),
            "work due after the planned wake-up must not wake"
        );

        outbox.push(t0 + Duration::from_secs(1), 3);
        let earlier = tokio::time::timeout(Duration::from_secs(5), outbox.woken()).await;
        assert!(earlier.is_ok());
    }
}
