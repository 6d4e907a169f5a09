//! How long this worker may still send for a sender. The ownership loop
//! moves the lease's end forward on every renewal of the worker's
//! liveness; a dispatcher starts a send only if the lease covers the
//! longest that send can take (the window read, the Graph API call), and
//! the attempt looks again just before the call. So a worker cut off from
//! Redis has no call of its own in flight by the time another worker can
//! take the sender: [`SAFETY_MARGIN`] before its liveness could lapse.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Between the end of the last call this worker may have in flight and
/// the moment its lease can lapse. Longer than one rate window (1 s), so
/// the sends of the old and the new owner never share a window, plus room
/// for clock drift.
pub(crate) const SAFETY_MARGIN: Duration = gateway_config::LEASE_SAFETY_MARGIN;

/// What a dispatcher sees of its lease.
#[derive(Clone)]
pub(crate) struct Lease {
    /// When no call of this worker's may still run (`None`: lost).
    end: watch::Receiver<Option<Instant>>,
}

/// What the ownership loop moves the lease with.
pub(crate) struct LeaseKeeper {
    end: watch::Sender<Option<Instant>>,
    /// The longest a send can take: a renewal that lets sends start again
    /// wakes the dispatcher.
    longest_send: Duration,
}

pub(crate) fn new_lease(longest_send: Duration) -> (LeaseKeeper, Lease) {
    let (tx, rx) = watch::channel(None);
    (
        LeaseKeeper {
            end: tx,
            longest_send,
        },
        Lease { end: rx },
    )
}

impl Lease {
    /// Whether something that takes up to `needs` may start now: it would
    /// end before the lease could lapse.
    pub fn covers(&self, needs: Duration) -> bool {
        self.end().is_some_and(|end| {
            Instant::now()
                .checked_add(needs)
                .is_some_and(|done| done <= end)
        })
    }

    /// The lease was lost: nothing may be sent any more.
    pub fn is_lost(&self) -> bool {
        self.end().is_none()
    }

    fn end(&self) -> Option<Instant> {
        *self.end.borrow()
    }

    /// Resolves when sends may start again after a renewal, or the lease
    /// is lost.
    pub async fn changed(&mut self) {
        if self.end.changed().await.is_err() {
            // The keeper is gone: nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}

impl LeaseKeeper {
    /// The lease was taken or renewed by a request sent at `requested_at`.
    /// Only a renewal that lets sends start again wakes the dispatcher: one
    /// that extends a lease already covering them is read when the
    /// dispatcher next decides (a thousand idle senders are not woken
    /// every second).
    pub fn renewed(&self, requested_at: Instant, ttl: Duration) {
        let end = requested_at + ttl.saturating_sub(SAFETY_MARGIN);
        let longest_send = self.longest_send;
        self.end.send_if_modified(|current| {
            let covered = current.is_some_and(|end| Instant::now() + longest_send <= end);
            *current = Some(end);
            !covered
        });
    }

    /// The lease is gone: stop at once.
    pub fn lost(&self) {
        self.end.send_replace(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: Duration = Duration::from_secs(2);
    const TTL: Duration = Duration::from_secs(6);

    #[tokio::test]
    async fn a_send_starts_only_if_the_lease_outlasts_it() {
        let (keeper, lease) = new_lease(SEND);
        assert!(!lease.covers(Duration::ZERO), "not taken yet");
        keeper.renewed(Instant::now(), TTL);
        assert!(lease.covers(SEND));
        // Renewed 2 s ago: 4 s of lease left, 2.5 s of it before the margin.
        keeper.renewed(Instant::now() - Duration::from_secs(2), TTL);
        assert!(lease.covers(SEND));
        assert!(!lease.covers(Duration::from_secs(2) + SEND));
        keeper.lost();
        assert!(lease.is_lost());
        assert!(!lease.covers(Duration::ZERO));
    }

    #[tokio::test]
    async fn only_a_renewal_that_lets_sends_start_again_wakes_the_dispatcher() {
        let (keeper, mut lease) = new_lease(SEND);
        keeper.renewed(Instant::now(), TTL);
        assert!(lease.end.has_changed().expect("open"), "taken");
        lease.end.mark_unchanged();
        keeper.renewed(Instant::now(), TTL);
        assert!(
            !lease.end.has_changed().expect("open"),
            "renewed while covering sends: no wake-up"
        );
        // Too little left for a send (Redis was away), then renewed.
        keeper.renewed(Instant::now() - TTL, TTL);
        lease.end.mark_unchanged();
        keeper.renewed(Instant::now(), TTL);
        assert!(lease.end.has_changed().expect("open"));
        lease.end.mark_unchanged();
        keeper.lost();
        assert!(lease.end.has_changed().expect("open"));
        lease.changed().await;
    }
}
