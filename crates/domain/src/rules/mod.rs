//! The gateway's rules as plain functions and small structs: what Meta's
//! errors mean, when to retry, how fast a sender may send, how a 130429
//! lowers that rate, how senders share a WABA's rate, how often one
//! recipient may be messaged, how many calls a sender keeps open, whether
//! `/send` admits a message, which worker owns which sender, and whether a
//! recipient's 24-hour window allows a free-form message; which addresses
//! a callback may not reach (`address_range`). No I/O and no clock: the
//! caller passes `now`, so every rule is tested in virtual time.

pub mod adaptive_rate;
pub mod address_range;
pub mod admission;
pub mod assignment;
pub mod concurrency;
pub mod error_class;
pub mod messaging_limit;
pub mod pair_limit;
pub mod pricing;
pub mod retry;
pub mod send_window;
pub mod shared_rate;
pub mod suppression;
pub mod window;

pub use adaptive_rate::AdaptiveRate;
pub use error_class::{ErrorClass, TransportFailure, classify_code, classify_transport};
pub use pair_limit::{PairLimiter, PairSlot};
pub use retry::{Failure, RetryDecision, RetryPolicy, Verdict};
pub use send_window::SendWindow;
pub use shared_rate::{MemberId, SharedRate};
