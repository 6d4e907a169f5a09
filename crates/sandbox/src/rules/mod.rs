//! Meta's limits as pure state machines: no clock, no locks, no I/O. Each
//! takes `now` as an argument, so the unit tests drive them with virtual
//! time and the send path owns the locking.

pub(crate) mod conversation;
pub(crate) mod pair;
pub(crate) mod throughput;
pub(crate) mod window;
