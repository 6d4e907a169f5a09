//! The gateway's domain: what a message is, who it goes to, and the rules
//! that decide what happens to it. No I/O lives here: every type is parsed
//! once at the edge (HTTP, Redis) and is valid from then on, and every rule is
//! a plain function with unit tests.

pub mod clock;
pub mod field_error;
pub mod ids;
pub mod media_limits;
pub mod message;
pub mod recipient;
pub mod rules;
pub mod status;
pub mod templates;
pub mod webhook;

pub use field_error::FieldError;
pub use ids::{Lane, MessageId};
pub use message::{MessageKind, OutboundMessage};
pub use recipient::Recipient;
pub use status::MessageStatus;
