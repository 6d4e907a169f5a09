//! Identifiers the sandbox hands out the way Meta does: wamids for messages
//! and `fbtrace_id`s for errors.
//!
//! A wamid is `wamid.` + base64 of a small binary record holding the user's
//! id, a direction byte and a 32-hex-digit message id, like Meta's. The id is
//! a per-sandbox random prefix plus a sequence number, so wamids are unique
//! within a sandbox and across restarts, and a record only needs to keep the
//! sequence number to rebuild its wamid.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::random::Random;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Outbound,
    Inbound,
}

#[derive(Debug)]
pub(crate) struct Ids {
    prefix: u64,
    next: AtomicU64,
}

impl Ids {
    pub(crate) fn new(random: &Random) -> Self {
        Self {
            prefix: random.next_u64(),
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn wamid(&self, user: &str, sequence: u64, direction: Direction) -> String {
        let user = &user.as_bytes()[..user.len().min(usize::from(u8::MAX))];
        let id = format!("{:016X}{:016X}", self.prefix, sequence);
        let mut record = Vec::with_capacity(user.len() + id.len() + 10);
        record.extend_from_slice(&[0x1C, 0x18, user.len() as u8]);
        record.extend_from_slice(user);
        let direction = match direction {
            Direction::Outbound => 0x11,
            Direction::Inbound => 0x12,
        };
        record.extend_from_slice(&[0x15, 0x02, 0x00, direction, 0x18, id.len() as u8]);
        record.extend_from_slice(id.as_bytes());
        record.push(0x00);
        let mut wamid = String::with_capacity(6 + record.len().div_ceil(3) * 4);
        wamid.push_str("wamid.");
        base64_into(&record, &mut wamid);
        wamid
    }
}

/// An `fbtrace_id`-looking token: 23 url-safe base64 characters.
pub(crate) fn fbtrace_id(random: &Random) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // Eight 6-bit characters from each of three words.
    let mut bits = [random.next_u64(), random.next_u64(), random.next_u64()];
    (0..23)
        .map(|i| {
            let word = &mut bits[(i / 8) % 3];
            let c = ALPHABET[(*word & 63) as usize];
            *word >>= 6;
            char::from(c)
        })
        .collect()
}

fn base64_into(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        let encode = |b: &[u8]| {
            let mut s = String::new();
            base64_into(b, &mut s);
            s
        };
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn wamids_look_like_metas_and_are_unique() {
        let ids = Ids::new(&Random::new(1));
        let a = ids.wamid("16505551234", ids.next_sequence(), Direction::Outbound);
        let b = ids.wamid("16505551234", ids.next_sequence(), Direction::Outbound);
        // Meta's wamids for an 11-digit number start the same way.
        assert!(a.starts_with("wamid.HBgLMTY1MDU1NTEyMzQVAgAR"), "{a}");
        assert_ne!(a, b);
        let inbound = ids.wamid("16505551234", 7, Direction::Inbound);
        assert!(
            inbound.starts_with("wamid.HBgLMTY1MDU1NTEyMzQVAgAS"),
            "{inbound}"
        );
        let other_sandbox = Ids::new(&Random::new(2));
        assert_ne!(
            other_sandbox.wamid("16505551234", 1, Direction::Outbound),
            ids.wamid("16505551234", 1, Direction::Outbound)
        );
    }

    #[test]
    fn fbtrace_ids_are_23_url_safe_characters() {
        let random = Random::new(3);
        let id = fbtrace_id(&random);
        assert_eq!(id.len(), 23);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, fbtrace_id(&random));
    }
}
