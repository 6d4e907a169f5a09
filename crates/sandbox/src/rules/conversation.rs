//! Conversation-based pricing, as Meta played it before per-message pricing
//! (July 2025) and as webhook versions before v24 still show it: a
//! conversation between a number and a user opens with the first message
//! of a category sent while none of that category is open, lasts 24 hours,
//! and every message of that category within them belongs to it (their
//! statuses carry its `conversation` object: the same id and origin).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// How long a conversation lasts.
pub(crate) const LENGTH: Duration = Duration::from_secs(24 * 3600);

/// Below this many open conversations, none are swept.
const MIN_SWEEP_SIZE: usize = 1_024;

/// An open conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conversation {
    pub(crate) id: String,
    /// When it ends, on the wall clock (its `expiration_timestamp`).
    pub(crate) expires: SystemTime,
    /// When it ends, on the monotonic clock.
    ends: Instant,
}

/// A conversation's number, user and category.
type Key = (Box<str>, Box<str>, Box<str>);

/// The conversations open now, by (number, user, category). Ended ones are
/// swept out when the map has doubled since the last sweep, so memory stays
/// bounded by the conversations of the last 24 hours.
#[derive(Debug)]
pub(crate) struct Conversations {
    open: HashMap<Key, Conversation>,
    sweep_at: usize,
}

impl Default for Conversations {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            sweep_at: MIN_SWEEP_SIZE,
        }
    }
}

impl Conversations {
    /// The conversation a message of `category` from `number` to `user`
    /// sent at `now` (`wall` on the wall clock) belongs to: the open one,
    /// or a new one named by `new_id`.
    pub(crate) fn join(
        &mut self,
        number: &str,
        user: &str,
        category: &str,
        now: Instant,
        wall: SystemTime,
        new_id: impl FnOnce() -> String,
    ) -> Conversation {
        let key: Key = (Box::from(number), Box::from(user), Box::from(category));
        if let Some(open) = self.open.get(&key).filter(|c| c.ends > now) {
            return open.clone();
        }
        if self.open.len() >= self.sweep_at {
            self.open.retain(|_, c| c.ends > now);
            self.sweep_at = (self.open.len() * 2).max(MIN_SWEEP_SIZE);
        }
        let conversation = Conversation {
            id: new_id(),
            expires: wall.checked_add(LENGTH).unwrap_or(wall),
            ends: now + LENGTH,
        };
        self.open.insert(key, conversation.clone());
        conversation
    }

    pub(crate) fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_conversation_spans_24_hours_per_user_and_category() {
        let mut conversations = Conversations::default();
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_749_416_383);
        let mut ids = 0;
        let mut next = || {
            ids += 1;
            format!("c{ids}")
        };
        let first = conversations.join("n", "u", "utility", now, wall, &mut next);
        assert_eq!(first.id, "c1");
        assert_eq!(first.expires, wall + LENGTH);
        let hour = Duration::from_secs(3600);
        let same = conversations.join("n", "u", "utility", now + hour, wall + hour, &mut next);
        assert_eq!(same, first, "within 24 h: the same conversation");
        assert_eq!(
            conversations
                .join("n", "u", "marketing", now, wall, &mut next)
                .id,
            "c2",
            "another category: another conversation"
        );
        assert_eq!(
            conversations
                .join("n", "v", "utility", now, wall, &mut next)
                .id,
            "c3",
            "another user"
        );
        let later = now + LENGTH;
        assert_eq!(
            conversations
                .join("n", "u", "utility", later, wall + LENGTH, &mut next)
                .id,
            "c4",
            "after 24 h a new one opens"
        );
    }

    #[test]
    fn ended_conversations_are_swept() {
        let mut conversations = Conversations::default();
        let now = Instant::now();
        let wall = SystemTime::now();
        for i in 0..MIN_SWEEP_SIZE {
            conversations.join("n", &format!("u{i}"), "utility", now, wall, || {
                format!("{i}")
            });
        }
        conversations.join("n", "late", "utility", now + LENGTH, wall, || "x".into());
        assert_eq!(conversations.open.len(), 1);
    }
}
