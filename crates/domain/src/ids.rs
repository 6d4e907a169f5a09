//! Message ids. A message's id is its sender's phone_number_id and the id
//! Redis gave its stream entry when it was accepted
//! (`106540352242922-1732694400000-0`). So the api stores a message with a
//! single XADD, every key of a message can share the sender's Redis hash tag,
//! and a lookup by id alone finds the right slot and, while the message is
//! queued, its stream entry. The id stays the message's id for life, also
//! when a retry or a replay puts it in the stream again.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// The id of the message accepted as stream entry `entry_id` in the
    /// queue of the sender with this phone_number_id. `None` if either part
    /// is malformed.
    pub fn new(phone_number_id: &str, entry_id: &str) -> Option<Self> {
        (is_phone_number_id(phone_number_id) && is_entry_id(entry_id))
            .then(|| Self(format!("{phone_number_id}-{entry_id}")))
    }

    /// Parses an id from outside (a URL path, a Redis reply). `None` for
    /// anything that is not of the form [`MessageId::new`] makes.
    pub fn parse(input: &str) -> Option<Self> {
        let (phone_number_id, entry_id) = input.split_once('-')?;
        Self::new(phone_number_id, entry_id)
    }

    /// The phone_number_id of the sender this message belongs to.
    pub fn phone_number_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(pnid, _)| pnid)
    }

    /// The stream entry the message was first accepted as.
    pub fn entry_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, entry)| entry)
    }

    /// When the message was accepted (Unix ms, Redis's clock).
    pub fn accepted_at_ms(&self) -> i64 {
        self.entry_id()
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_phone_number_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Redis stream ids are `<ms>-<seq>`, both decimal u64.
fn is_entry_id(s: &str) -> bool {
    let decimal =
        |part: &str| (1..=20).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    s.split_once('-')
        .is_some_and(|(ms, seq)| decimal(ms) && decimal(seq))
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_sender_and_entry() {
        let id = MessageId::new("106540352242922", "1732694400000-3").expect("valid");
        assert_eq!(id.as_str(), "106540352242922-1732694400000-3");
        assert_eq!(id.phone_number_id(), "106540352242922");
        assert_eq!(id.entry_id(), "1732694400000-3");
        assert_eq!(id.accepted_at_ms(), 1_732_694_400_000);
        assert_eq!(MessageId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn foreign_strings_are_not_ids() {
        for input in [
            "",
            "-",
            "abc-1-0",
            "123-1",
            "123-1-",
            "123--0",
            "123-1-0-0",
            "123-1-x",
            "1732694400000-0",
            "../../etc/passwd",
            "123-99999999999999999999999-0",
        ] {
            assert_eq!(MessageId::parse(input), None, "{input:?}");
        }
    }
}
