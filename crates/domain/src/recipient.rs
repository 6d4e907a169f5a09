//! Who a message goes to. A WhatsApp user is addressed by phone number or,
//! since usernames arrived in 2026, by a business-scoped user id (BSUID) when
//! Meta shows no number. Both are parsed here once, into one canonical form
//! each, because the 24-hour window and the pair rate limit are keyed by that
//! form: "+1 (650) 555-1234" and "16505551234" must land on the same key.

use std::ops::RangeInclusive;

use crate::FieldError;

/// Digits in an E.164 number, country code included: E.164 allows at most
/// 15, and no country Meta serves has a full number shorter than 8.
const PHONE_DIGITS: RangeInclusive<usize> = 8..=15;

/// The part of a BSUID after "CC.": Meta's ids are 20 digits today; 64 leaves
/// room for the format to grow without accepting arbitrary text.
const USER_ID_CHARS: RangeInclusive<usize> = 1..=64;

/// The /send field a phone number comes in, and the Graph API field it goes out in.
const PHONE_FIELD: &str = "to";
/// The /send field a BSUID comes in, and the Graph API field it goes out in.
const USER_ID_FIELD: &str = "recipient";

/// Who a message goes to: a phone number normalised to E.164, or a BSUID.
/// Built only by the `parse_*` functions, so holding one means it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Phone(PhoneNumber),
    UserId(UserId),
}

/// A phone number in E.164 with its `+`: "+16505551234".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

/// A business-scoped user id: two upper-case letters (the user's country),
/// a dot, then letters and digits: "US.13491208655302741918".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl PhoneNumber {
    /// Accepts what people type: an optional leading `+`, digits, spaces,
    /// hyphens and parentheses. The number must include its country code:
    /// without a `+` Meta would prepend the business number's own country
    /// code, so we always send `+` and never guess. Errors name field "to".
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let invalid = |message: String| FieldError::new(PHONE_FIELD, "invalid_phone", message);
        let mut digits = String::new();
        for (i, c) in input.trim().chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' => {}
                _ => {
                    return Err(invalid(format!(
                        "{PHONE_FIELD} may hold only digits, a leading '+', spaces, '-', '(' and ')'; found {c:?}"
                    )));
                }
            }
        }
        if digits.starts_with('0') {
            return Err(invalid(format!(
                "{PHONE_FIELD} starts with 0; give the number with its country code, like +16505551234"
            )));
        }
        if !PHONE_DIGITS.contains(&digits.len()) {
            return Err(invalid(format!(
                "{PHONE_FIELD} has {} digits; a phone number with its country code has {} to {}",
                digits.len(),
                PHONE_DIGITS.start(),
                PHONE_DIGITS.end()
            )));
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl UserId {
    /// Accepts a BSUID as Meta shows it in webhooks. Errors name field "recipient".
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        Self::parse_in(input, USER_ID_FIELD)
    }

    /// `field` is where the value came from: a BSUID may also arrive in `to`.
    fn parse_in(input: &str, field: &'static str) -> Result<Self, FieldError> {
        let id = input.trim();
        let valid = id.split_once('.').is_some_and(|(country, rest)| {
            country.len() == 2
                && country.bytes().all(|b| b.is_ascii_uppercase())
                && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                && USER_ID_CHARS.contains(&rest.len())
        });
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(FieldError::invalid(
                field,
                format!(
                    "{field} is not a business-scoped user id: two upper-case letters, '.', then 1 to {} letters or digits, like US.13491208655302741918",
                    USER_ID_CHARS.end()
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Recipient {
    /// A phone number; errors name field "to".
    pub fn parse_phone(input: &str) -> Result<Self, FieldError> {
        PhoneNumber::parse(input).map(Self::Phone)
    }

    /// A BSUID; errors name field "recipient".
    pub fn parse_user_id(input: &str) -> Result<Self, FieldError> {
        UserId::parse(input).map(Self::UserId)
    }

    /// From the /send body's `to` and `recipient` fields: exactly one must be
    /// given. `to` may also hold a BSUID, as services that only copy the id
    /// from a webhook into `to` would otherwise fail for username users.
    pub fn from_fields(to: Option<&str>, recipient: Option<&str>) -> Result<Self, FieldError> {
        match (to, recipient) {
            (Some(_), Some(_)) => Err(FieldError::invalid(
                USER_ID_FIELD,
                "give either to or recipient, not both",
            )),
            (None, None) => Err(FieldError::new(
                PHONE_FIELD,
                "missing_field",
                "to or recipient is required",
            )),
            (None, Some(user_id)) => Self::parse_user_id(user_id),
            (Some(to), None) if looks_like_user_id(to) => {
                UserId::parse_in(to, PHONE_FIELD).map(Self::UserId)
            }
            (Some(to), None) => Self::parse_phone(to),
        }
    }

    /// The canonical form: "+16505551234" or "US.13491208655302741918".
    /// Window and pair state are keyed by it.
    pub fn key(&self) -> &str {
        match self {
            Self::Phone(phone) => phone.as_str(),
            Self::UserId(user_id) => user_id.as_str(),
        }
    }

    /// The Graph API field and value: ("to", "+16505551234") or
    /// ("recipient", "US.13491208655302741918").
    pub fn graph_field(&self) -> (&'static str, &str) {
        match self {
            Self::Phone(phone) => (PHONE_FIELD, phone.as_str()),
            Self::UserId(user_id) => (USER_ID_FIELD, user_id.as_str()),
        }
    }

    /// Parses back what `key()` produced (read from Redis). Only the canonical
    /// forms are accepted, so a key that was never produced by `key()` is None
    /// rather than silently normalised onto someone else's state.
    pub fn from_key(key: &str) -> Option<Self> {
        let parsed = if key.starts_with('+') {
            Self::parse_phone(key)
        } else {
            Self::parse_user_id(key)
        };
        parsed.ok().filter(|recipient| recipient.key() == key)
    }
}

/// "CC." at the start: no phone number has letters, so this is a BSUID
/// attempt and deserves a BSUID error rather than "letters in a phone number".
fn looks_like_user_id(input: &str) -> bool {
    matches!(input.trim().as_bytes(), [a, b, b'.', ..] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        let cases = [
            ("+1 (650) 555-1234", "+16505551234"),
            ("+16505551234", "+16505551234"),
            ("16505551234", "+16505551234"),
            ("  +44 20 7946 0958 ", "+442079460958"),
            ("+49-30-1234567", "+49301234567"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ];
        for (input, e164) in cases {
            let recipient = Recipient::parse_phone(input).expect(input);
            assert_eq!(recipient.key(), e164, "{input}");
            assert_eq!(recipient.graph_field(), ("to", e164), "{input}");
        }
    }

    #[test]
    fn bad_phone_numbers_are_rejected_on_field_to() {
        let cases = [
            "",
            "+",
            "+1 650 CALL NOW",
            "+1.650.555.1234",
            "1+6505551234",
            "++16505551234",
            "+1234567",
            "+1234567890123456",
            "+0 650 555 1234",
            "00 1 650 555 1234",
            "+１６５０５５５１２３４",
            "+٦٥٠٥٥٥١٢٣٤",
            "+1650\t5551234",
        ];
        for input in cases {
            let err = Recipient::parse_phone(input).expect_err(input);
            assert_eq!(
                (err.field.as_ref(), err.code),
                ("to", "invalid_phone"),
                "{input}"
            );
        }
        let err = Recipient::parse_phone("+1234567").expect_err("short");
        assert_eq!(
            err.message,
            "to has 7 digits; a phone number with its country code has 8 to 15"
        );
    }

    #[test]
    fn user_ids_are_two_capitals_a_dot_and_alphanumerics() {
        let long = format!("US.{}", "9".repeat(64));
        for input in ["US.13491208655302741918", "BR.abcDEF123", "GB.1", &long] {
            let recipient = Recipient::parse_user_id(input).expect(input);
            assert_eq!(recipient.key(), input);
            assert_eq!(recipient.graph_field(), ("recipient", input));
        }
        let too_long = format!("US.{}", "9".repeat(65));
        for input in [
            "",
            "US.",
            "us.1349",
            "USA.1349",
            "U.1349",
            "US1349",
            "US.13-49",
            "US.1349.1",
            "ÜS.1349",
            "US.١٢٣",
            &too_long,
        ] {
            let err = Recipient::parse_user_id(input).expect_err(input);
            assert_eq!(
                (err.field.as_ref(), err.code),
                ("recipient", "invalid_value"),
                "{input}"
            );
        }
    }

    #[test]
    fn from_fields_needs_exactly_one_and_accepts_a_user_id_in_to() {
        let phone = Recipient::from_fields(Some("+1 650 555 1234"), None).expect("phone");
        assert_eq!(phone.key(), "+16505551234");

        let in_recipient = Recipient::from_fields(None, Some("US.1349")).expect("bsuid");
        let in_to = Recipient::from_fields(Some("US.1349"), None).expect("bsuid in to");
        assert_eq!(in_recipient, in_to);
        assert_eq!(in_to.graph_field(), ("recipient", "US.1349"));

        let cases = [
            (None, None, "to", "missing_field"),
            (
                Some("+16505551234"),
                Some("US.1349"),
                "recipient",
                "invalid_value",
            ),
            (Some("us.1349"), None, "to", "invalid_value"),
            (Some("US.13-49"), None, "to", "invalid_value"),
            (Some("call me"), None, "to", "invalid_phone"),
            (None, Some("+16505551234"), "recipient", "invalid_value"),
        ];
        for (to, recipient, field, code) in cases {
            let err = Recipient::from_fields(to, recipient).expect_err("must fail");
            assert_eq!(
                (err.field.as_ref(), err.code),
                (field, code),
                "{to:?} {recipient:?}"
            );
        }
    }

    #[test]
    fn from_key_round_trips_and_takes_only_canonical_keys() {
        for input in [
            "+1 (650) 555-1234",
            "16505551234",
            "US.13491208655302741918",
        ] {
            let recipient = Recipient::from_fields(Some(input), None).expect(input);
            assert_eq!(Recipient::from_key(recipient.key()), Some(recipient));
        }
        for key in [
            "",
            "16505551234",
            "+1 650 555 1234",
            " +16505551234",
            "US.1349 ",
            "us.1",
        ] {
            assert_eq!(Recipient::from_key(key), None, "{key:?}");
        }
    }

    #[test]
    fn arbitrary_strings_never_panic() {
        let alphabet: Vec<char> = "+0123456789 -()().USabé١😀\t\u{0}".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let input: String = (0..len)
                .map(|i| {
                    let pick = (seed >> (i % 8 * 8)) as usize ^ i;
                    alphabet.get(pick % alphabet.len()).copied().unwrap_or('x')
                })
                .collect();
            let _ = Recipient::from_fields(Some(&input), None);
            let _ = Recipient::parse_user_id(&input);
            if let Some(recipient) = Recipient::from_key(&input) {
                assert_eq!(recipient.key(), input);
            }
        }
    }
}
