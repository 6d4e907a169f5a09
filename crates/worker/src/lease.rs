//! How long this worker may still send for a sender. The ownership loop
//! moves the deadline forward on every renewal; a dispatcher checks it
//! before every send, so a worker cut off from Redis stops sending by
//! itself, [`SAFETY_MARGIN`] before its lease can expire and another worker
//! can take the sender.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Between the last send this worker may make and the moment its lease can
/// expire. Longer than one rate window (1 s), so the sends of the old and
/// the new owner never share a window, plus room for clock drift.
pub(crate) const SAFETY_MARGIN: Duration = Duration::from_millis(1_500);

#[derive(Clone)]
pub(crate) struct Lease {
    valid_until: watch::Receiver<Option<Instant>>,
}

pub(crate) struct LeaseKeeper {
    valid_until: watch::Sender<Option<Instant>>,
}

pub(crate) fn new_lease() -> (LeaseKeeper, Lease) {
    let (tx, rx) = watch::channel(None);
    (LeaseKeeper { valid_until: tx }, Lease { valid_until: rx })
}

impl Lease {
    pub fn is_valid(&self) -> bool {
        self.valid_until()
            .is_some_and(|until| Instant::now() < until)
    }

    pub fn valid_until(&self) -> Option<Instant> {
        *self.valid_until.borrow()
    }

    /// Resolves when the lease becomes valid again, or is lost.
    pub async fn changed(&mut self) {
        if self.valid_until.changed().await.is_err() {
            // The keeper is gone: nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}

impl LeaseKeeper {
    /// The lease was taken or renewed by a request sent at `requested_at`.
    /// Only a lease that was not valid wakes its dispatcher: one renewed
    /// while valid is read when the dispatcher next decides (a thousand
    /// idle senders are not woken every second).
    pub fn renewed(&self, requested_at: Instant, ttl: Duration) {
        let until = requested_at + ttl.saturating_sub(SAFETY_MARGIN);
        self.valid_until.send_if_modified(|valid| {
            let was_valid = valid.is_some_and(|v| Instant::now() < v);
            *valid = Some(until);
            !was_valid
        });
    }

    /// The lease is gone: stop at once.
    pub fn lost(&self) {
        self.valid_until.send_replace(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_lease_that_was_not_valid_wakes_its_dispatcher() {
        let (keeper, mut lease) = new_lease();
        let ttl = Duration::from_secs(5);
        keeper.renewed(Instant::now(), ttl);
        assert!(lease.valid_until.has_changed().expect("open"), "taken");
        lease.valid_until.mark_unchanged();
        keeper.renewed(Instant::now(), ttl);
        assert!(
            !lease.valid_until.has_changed().expect("open"),
            "renewed while valid: no wake-up"
        );
        assert!(lease.is_valid(), "but the new deadline is there");
        // A lease that lapsed (Redis was away) and is renewed wakes it.
        keeper.renewed(Instant::now() - ttl, ttl);
        lease.valid_until.mark_unchanged();
        keeper.renewed(Instant::now(), ttl);
        assert!(lease.valid_until.has_changed().expect("open"));
        lease.valid_until.mark_unchanged();
        keeper.lost();
        assert!(lease.valid_until.has_changed().expect("open"));
        assert!(!lease.is_valid());
        lease.changed().await;
    }
}
