//! The life of a message: its states, which of them are final, and the rule
//! that status only moves forward (a late `sent` after `read` changes nothing).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Stored in Redis, waiting for a worker.
    Queued,
    /// Stored, but not to be sent before its `send_after`.
    Scheduled,
    /// A worker holds it and is calling the Graph API.
    Sending,
    /// A transient error; another attempt is due.
    Retrying,
    /// Kept back by a rule of Meta's account (the portfolio's messaging
    /// limit): sent once the rule allows it.
    Held,
    /// Meta accepted it (we hold a wamid).
    Sent,
    Delivered,
    Read,
    Failed,
    Expired,
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 11] = [
        Self::Queued,
        Self::Scheduled,
        Self::Sending,
        Self::Retrying,
        Self::Held,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Expired,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Retrying => "retrying",
            Self::Held => "held",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == input)
    }

    /// Whether the gateway's work on the message is over. `sent` counts: from
    /// there on only Meta's webhooks move it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Sent
                | Self::Delivered
                | Self::Read
                | Self::Failed
                | Self::Expired
                | Self::Cancelled
        )
    }

    /// How far along a message is; status only ever moves to a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued | Self::Scheduled => 0,
            Self::Sending | Self::Retrying | Self::Held => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
            Self::Failed | Self::Expired | Self::Cancelled => 5,
        }
    }

    /// Whether a record now in `self` should move to `next`. Before `sent`
    /// the gateway moves between its own working states freely; after it,
    /// Meta's events may only move a message forward, and a final failure
    /// stands.
    pub fn may_become(self, next: MessageStatus) -> bool {
        if self.rank() <= 1 && next.rank() <= 1 {
            return true;
        }
        next.rank() > self.rank()
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(MessageStatus::parse("bogus"), None);
    }

    #[test]
    fn status_moves_only_forward_after_sent() {
        assert!(Queued.may_become(Sending));
        assert!(Sending.may_become(Retrying));
        assert!(Retrying.may_become(Sending));
        assert!(Sending.may_become(Sent));
        assert!(Sent.may_become(Delivered));
        assert!(Sent.may_become(Read));
        assert!(Delivered.may_become(Read));
        assert!(!Read.may_become(Sent));
        assert!(!Read.may_become(Delivered));
        assert!(!Delivered.may_become(Sent));
        assert!(!Sent.may_become(Sent));
        assert!(!Failed.may_become(Sent));
        assert!(Sent.may_become(Failed));
    }
}
