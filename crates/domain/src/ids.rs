//! Message ids. An id carries its sender's phone_number_id, so that every key
//! of a message (stream entry, record, wamid index) can share the sender's
//! Redis hash tag and a lookup by id alone finds the right slot in a cluster.
//! The rest is a ULID: unique without coordination and sortable by time.

use std::fmt;

/// `<phone_number_id>-<ULID>`, for example `106540352242922-01JD3F6Q8Z1XK9V7M2T4R5N6PA`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

const ULID_LEN: usize = 26;

impl MessageId {
    /// A fresh id for a message of the sender with this phone_number_id.
    pub fn generate(phone_number_id: &str) -> Self {
        let ulid = ulid::Ulid::new();
        Self(format!("{phone_number_id}-{ulid}"))
    }

    /// Parses an id from outside (a URL path, a Redis reply). `None` for
    /// anything that is not of the form this module generates.
    pub fn parse(input: &str) -> Option<Self> {
        let (phone_number_id, ulid) = input.rsplit_once('-')?;
        let valid_pnid = !phone_number_id.is_empty()
            && phone_number_id.len() <= 32
            && phone_number_id.bytes().all(|b| b.is_ascii_digit());
        let valid_ulid = ulid.len() == ULID_LEN && ulid::Ulid::from_string(ulid).is_ok();
        (valid_pnid && valid_ulid).then(|| Self(input.to_owned()))
    }

    /// The phone_number_id of the sender this message belongs to.
    pub fn phone_number_id(&self) -> &str {
        self.0
            .rsplit_once('-')
            .map_or(self.0.as_str(), |(pnid, _)| pnid)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    fn generated_ids_parse_back_and_name_their_sender() {
        let id = MessageId::generate("106540352242922");
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.phone_number_id(), "106540352242922");
    }

    #[test]
    fn ids_are_unique() {
        let a = MessageId::generate("1");
        let b = MessageId::generate("1");
        assert_ne!(a, b);
    }

    #[test]
    fn foreign_strings_are_not_ids() {
        for input in [
            "",
            "-",
            "abc-01JD3F6Q8Z1XK9V7M2T4R5N6PA",
            "123-short",
            "123-01JD3F6Q8Z1XK9V7M2T4R5N6P!",
            "01JD3F6Q8Z1XK9V7M2T4R5N6PA",
            "../../etc/passwd",
        ] {
            assert_eq!(MessageId::parse(input), None, "{input:?}");
        }
    }
}
