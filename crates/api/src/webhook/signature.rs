//! Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, an
//! HMAC-SHA256 of the raw body with the app secret. Checked over the bytes
//! as received (Meta signs its own escaping, which a re-serialisation would
//! change) and in constant time, against every configured app secret.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub(crate) const HEADER: &str = "x-hub-signature-256";

/// Why a signature was refused; also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Missing,
    Malformed,
    Mismatch,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Checks `header` (the header's value, if present) over `body`.
pub(crate) fn check(
    header: Option<&[u8]>,
    body: &[u8],
    secrets: &[SecretString],
) -> Result<(), Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let hex_digest = header.strip_prefix(b"sha256=").ok_or(Refusal::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| Refusal::Malformed)?;
    let matches = |secret: &SecretString| {
        Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .map(|mac| mac.chain_update(body).verify_slice(&expected).is_ok())
            .unwrap_or(false)
    };
    // Every secret is tried, so the time taken does not tell which matched.
    let matched = secrets.iter().fold(false, |found, s| matches(s) | found);
    if matched {
        Ok(())
    } else {
        Err(Refusal::Mismatch)
    }
}

#[cfg(test)]
pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("any key length")
        .chain_update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values.iter().map(|v| SecretString::from(*v)).collect()
    }

    #[test]
    fn a_known_vector_matches() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), from RFC 4231-style test data.
        let header = b"sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        let body = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(check(Some(header), body, &secrets(&["key"])), Ok(()));
    }

    #[test]
    fn any_configured_secret_may_sign() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign("new-secret", body);
        let configured = secrets(&["old-secret", "new-secret"]);
        assert_eq!(check(Some(header.as_bytes()), body, &configured), Ok(()));
        assert_eq!(
            check(Some(header.as_bytes()), body, &secrets(&["old-secret"])),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn the_raw_bytes_are_signed_not_a_reserialisation() {
        let escaped = br#"{"text":"caf\u00e9"}"#;
        let header = sign("s", escaped);
        assert_eq!(
            check(Some(header.as_bytes()), escaped, &secrets(&["s"])),
            Ok(())
        );
        let reserialised = "{\"text\":\"café\"}".as_bytes();
        assert_eq!(
            check(Some(header.as_bytes()), reserialised, &secrets(&["s"])),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn missing_malformed_and_tampered_signatures_are_refused() {
        let body = b"{}";
        let s = secrets(&["s"]);
        assert_eq!(check(None, body, &s), Err(Refusal::Missing));
        assert_eq!(check(Some(b"md5=abc"), body, &s), Err(Refusal::Malformed));
        assert_eq!(check(Some(b"sha256=zz"), body, &s), Err(Refusal::Malformed));
        let header = sign("s", body);
        assert_eq!(
            check(Some(header.as_bytes()), b"{ }", &s),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            check(Some(header.as_bytes()), body, &[]),
            Err(Refusal::Mismatch)
        );
    }
}
