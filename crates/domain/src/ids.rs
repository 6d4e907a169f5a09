//! Message ids. A message's id is its sender's phone_number_id, the lane it
//! was accepted into, and a unique sequence within that lane: for a queued
//! message, the id Redis gave its stream entry
//! (`106540352242922-1732694400000-0`, bulk: `106540352242922-b1732694400000-0`);
//! for a scheduled one, the time and a counter (`106540352242922-s1732694400000-7`).
//! So the api stores a message in one round trip, every key of a message
//! shares the sender's Redis hash tag, and a lookup by id alone finds the
//! right slot and, while the message waits, its stream entry. The id stays
//! the message's id for life, also when a retry, a schedule or a replay puts
//! it in a stream again.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

/// Where a message was accepted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The sender's main stream: sent first.
    Transactional,
    /// The sender's bulk stream: sent when no transactional message waits.
    Bulk,
    /// Held until its `send_after`, then moved into one of the streams.
    Scheduled,
}

impl Lane {
    /// The lanes a sender's messages wait in to be sent, in the order they
    /// go (a scheduled message waits in the transactional one when due,
    /// unless it is bulk).
    pub const STREAMS: [Lane; 2] = [Lane::Transactional, Lane::Bulk];

    /// Its place in [`Lane::STREAMS`] (scheduled: the transactional stream's).
    pub fn stream_index(self) -> usize {
        match self {
            Self::Bulk => 1,
            Self::Transactional | Self::Scheduled => 0,
        }
    }

    /// Its one-letter code wherever it is stored (key names, scheduled
    /// members): `t`, `b`, `s`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Transactional => "t",
            Self::Bulk => "b",
            Self::Scheduled => "s",
        }
    }

    /// Its mark in message ids: the code, except that a transactional
    /// message's id has none (the ids handed out so far are kept as they are).
    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::Transactional => "",
            other => other.code(),
        }
    }
}

impl MessageId {
    /// The id of the message accepted as `sequence` (a stream entry id, or
    /// `<ms>-<n>` for a scheduled message) in `lane` of the sender with this
    /// phone_number_id. `None` if either part is malformed.
    pub fn new(phone_number_id: &str, lane: Lane, sequence: &str) -> Option<Self> {
        (is_phone_number_id(phone_number_id) && is_sequence(sequence))
            .then(|| Self(format!("{phone_number_id}-{}{sequence}", lane.id_prefix())))
    }

    /// Parses an id from outside (a URL path, a Redis reply). `None` for
    /// anything that is not of the form [`MessageId::new`] makes.
    pub fn parse(input: &str) -> Option<Self> {
        let (phone_number_id, rest) = input.split_once('-')?;
        let (lane, sequence) = split_lane(rest);
        Self::new(phone_number_id, lane, sequence)
    }

    /// The phone_number_id of the sender this message belongs to.
    pub fn phone_number_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(pnid, _)| pnid)
    }

    pub fn lane(&self) -> Lane {
        split_lane(self.rest()).0
    }

    /// The stream entry the message was first accepted as; `None` for a
    /// scheduled message.
    pub fn entry_id(&self) -> Option<&str> {
        match split_lane(self.rest()) {
            (Lane::Scheduled, _) => None,
            (_, sequence) => Some(sequence),
        }
    }

    /// When the message was accepted (Unix ms, Redis's clock).
    pub fn accepted_at_ms(&self) -> i64 {
        split_lane(self.rest())
            .1
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn rest(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, rest)| rest)
    }
}

fn split_lane(rest: &str) -> (Lane, &str) {
    if let Some(sequence) = rest.strip_prefix('b') {
        (Lane::Bulk, sequence)
    } else if let Some(sequence) = rest.strip_prefix('s') {
        (Lane::Scheduled, sequence)
    } else {
        (Lane::Transactional, rest)
    }
}

fn is_phone_number_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Redis stream ids are `<ms>-<seq>`, both decimal u64.
fn is_sequence(s: &str) -> bool {
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
    fn each_lane_has_one_code_and_ids_keep_their_marks() {
        let lanes = [Lane::Transactional, Lane::Bulk, Lane::Scheduled];
        let codes: Vec<&str> = lanes.iter().map(|lane| lane.code()).collect();
        assert_eq!(codes, ["t", "b", "s"]);
        for lane in lanes {
            let id = MessageId::new("1", lane, "2-3").expect("valid");
            assert_eq!(id.lane(), lane);
            assert_eq!(id.as_str(), format!("1-{}2-3", lane.id_prefix()));
        }
        for (index, lane) in Lane::STREAMS.into_iter().enumerate() {
            assert_eq!(lane.stream_index(), index);
        }
        assert_eq!(Lane::Scheduled.stream_index(), 0);
    }

    #[test]
    fn ids_name_their_sender_lane_and_entry() {
        let id = MessageId::new("106540352242922", Lane::Transactional, "1732694400000-3")
            .expect("valid");
        assert_eq!(id.as_str(), "106540352242922-1732694400000-3");
        assert_eq!(id.phone_number_id(), "106540352242922");
        assert_eq!(id.lane(), Lane::Transactional);
        assert_eq!(id.entry_id(), Some("1732694400000-3"));
        assert_eq!(id.accepted_at_ms(), 1_732_694_400_000);
        assert_eq!(MessageId::parse(id.as_str()), Some(id));

        let bulk = MessageId::new("1", Lane::Bulk, "5-0").expect("valid");
        assert_eq!(bulk.as_str(), "1-b5-0");
        assert_eq!(
            (bulk.lane(), bulk.entry_id(), bulk.accepted_at_ms()),
            (Lane::Bulk, Some("5-0"), 5)
        );
        assert_eq!(MessageId::parse("1-b5-0"), Some(bulk));

        let scheduled = MessageId::parse("1-s7-2").expect("valid");
        assert_eq!(
            (
                scheduled.lane(),
                scheduled.entry_id(),
                scheduled.accepted_at_ms()
            ),
            (Lane::Scheduled, None, 7)
        );
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
            "123-x1-0",
            "123-bb1-0",
            "1732694400000-0",
            "../../etc/passwd",
            "123-99999999999999999999999-0",
        ] {
            assert_eq!(MessageId::parse(input), None, "{input:?}");
        }
    }
}
