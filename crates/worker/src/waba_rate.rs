//! A WABA's rate, shared by the dispatchers of its numbers in this worker
//! (`[[wabas]] rate_per_second`). The ownership loop owns a limited WABA's
//! numbers together, under a lease of their own, so one worker holds the
//! whole shared window; it hands the window's sends to the next owner as a
//! sender's lease does. The fairness between the numbers is the rule's
//! (`gateway_domain::rules::SharedRate`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use gateway_domain::rules::{MemberId, SharedRate};

use crate::sender_state::RATE_WINDOW;

/// One WABA's shared window, held by the worker that owns its numbers.
#[derive(Clone)]
pub(crate) struct WabaRate(Arc<Mutex<SharedRate>>);

impl WabaRate {
    /// `handed_over` = the previous owner's sends still in the window.
    pub fn new(limit: u32, handed_over: impl IntoIterator<Item = Instant>) -> Self {
        let mut rate = SharedRate::new(limit, RATE_WINDOW);
        rate.seed(handed_over);
        Self(Arc::new(Mutex::new(rate)))
    }

    /// A place for one number's dispatcher; given back when it is dropped.
    pub fn join(&self) -> WabaShare {
        let member = self.lock().join();
        WabaShare {
            rate: self.clone(),
            member,
        }
    }

    /// The sends in the window, oldest first, for the next owner.
    pub fn recent(&self) -> Vec<Instant> {
        self.lock().recent().collect()
    }

    fn lock(&self) -> MutexGuard<'_, SharedRate> {
        // Every critical section leaves the window consistent: a panic in
        // another dispatcher does not make it unusable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One number's place in its WABA's shared rate.
pub(crate) struct WabaShare {
    rate: WabaRate,
    member: MemberId,
}

impl WabaShare {
    /// When this number may send, being ready at `ready_at` by its own limits.
    pub fn next_allowed(&self, now: Instant, ready_at: Instant) -> Instant {
        self.rate.lock().next_allowed(self.member, now, ready_at)
    }

    /// The WABA's rate: the most this sender can keep.
    pub fn limit(&self) -> u32 {
        self.rate.lock().limit()
    }

    pub fn try_acquire(&self, now: Instant) -> Result<(), Instant> {
        self.rate.lock().try_acquire(self.member, now)
    }

    /// The send recorded at `recorded` left at `left`.
    pub fn delay(&self, recorded: Instant, left: Instant) {
        self.rate.lock().delay(recorded, left);
    }

    /// The send recorded at `recorded` never reached Meta.
    pub fn give_back(&self, recorded: Instant) {
        self.rate.lock().give_back(self.member, recorded);
    }
}

impl Drop for WabaShare {
    fn drop(&mut self) {
        self.rate.lock().leave(self.member);
    }
}
