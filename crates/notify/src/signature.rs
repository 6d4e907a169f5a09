//! Signing what we POST, so a receiver can tell that a notification came
//! from the gateway and was not changed or replayed long after.
//!
//! The signature is `sha256=<hex HMAC-SHA256>` over `"<timestamp>.<body>"`,
//! keyed by the signer's secret. The timestamp (Unix seconds) is part of the
//! signed text so a receiver that rejects old timestamps also rejects
//! replays of an old body; checking freshness is the receiver's choice.
//! Verification compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Gateway-Signature-256";
/// The header carrying the Unix time (seconds) the signature was made at.
pub const TIMESTAMP_HEADER: &str = "X-Gateway-Timestamp";

const PREFIX: &str = "sha256=";

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long ones are hashed), so
    // `new_from_slice` cannot fail; the fallback only satisfies the type.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed by `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "{PREFIX}{}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` is the signature of `body` at `timestamp` under
/// `secret`. Malformed headers (no `sha256=`, not hex, wrong length) are
/// simply not valid. The comparison takes the same time wherever the
/// first differing byte is.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    // `verify_slice` rejects a wrong length and compares in constant time.
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test-key";
    const BODY: &[u8] = br#"{"event":"status","id":"abc"}"#;

    #[test]
    fn matches_a_vector_computed_elsewhere() {
        // printf '%s' '1700000000.{"event":"status","id":"abc"}' \
        //   | openssl dgst -sha256 -hmac 'whsec-test-key'
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            "sha256=02f0c96a33c1cd2556185e4194836b15fca818012dda5509dc2629d85e3c42d3"
        );
    }

    #[test]
    fn a_signature_verifies_with_its_own_inputs() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert!(verify(SECRET, 1_700_000_000, BODY, &header));
    }

    #[test]
    fn a_wrong_secret_fails() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert!(!verify(b"another-secret", 1_700_000_000, BODY, &header));
    }

    #[test]
    fn a_tampered_body_or_timestamp_fails() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert!(!verify(
            SECRET,
            1_700_000_000,
            br#"{"event":"status","id":"abd"}"#,
            &header
        ));
        assert!(!verify(SECRET, 1_700_000_001, BODY, &header));
    }

    #[test]
    fn malformed_headers_fail() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        let digest = header.trim_start_matches("sha256=");
        for bad in [
            "",
            "sha256=",
            digest,
            &format!("sha1={digest}"),
            &format!("sha256={}", &digest[..62]),
            &format!("sha256={digest}00"),
            &format!("sha256={}zz", &digest[..62]),
        ] {
            assert!(!verify(SECRET, 1_700_000_000, BODY, bad), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_secret_or_body_still_signs() {
        let header = sign(b"", 0, b"");
        assert!(verify(b"", 0, b"", &header));
        assert_eq!(header.len(), "sha256=".len() + 64);
    }
}
