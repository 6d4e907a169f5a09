//! How the sandbox names a WhatsApp user: by phone digits or by
//! business-scoped user id (BSUID). Window and pair state, the user
//! directory and the records are all keyed by `UserId::key`, the same way
//! Meta keys them: `+1 (650) 555-1234` and `16505551234` are one user.

/// E.164 allows at most 15 digits; anything much shorter is no phone number.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 6..=15;
const BSUID_MAX_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UserId {
    Phone(String),
    Scoped(String),
}

impl UserId {
    /// A phone number as `to` accepts it: digits with any `+`, spaces,
    /// hyphens and parentheses, which are dropped.
    pub(crate) fn parse_phone(input: &str) -> Option<Self> {
        let mut digits = String::with_capacity(input.len());
        for c in input.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' | ' ' | '-' | '(' | ')' => {}
                _ => return None,
            }
        }
        PHONE_DIGITS
            .contains(&digits.len())
            .then_some(Self::Phone(digits))
    }

    /// A BSUID such as `US.13491208655302741918`: a two-letter country code,
    /// a dot, and an alphanumeric id.
    pub(crate) fn parse_scoped(input: &str) -> Option<Self> {
        let (country, id) = input.split_once('.')?;
        let valid = country.len() == 2
            && country.bytes().all(|b| b.is_ascii_uppercase())
            && (1..=BSUID_MAX_LEN).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| Self::Scoped(input.to_owned()))
    }

    /// Either form, as in a simulated inbound message or the user directory.
    pub(crate) fn parse(input: &str) -> Option<Self> {
        Self::parse_scoped(input).or_else(|| Self::parse_phone(input))
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            Self::Phone(digits) => digits,
            Self::Scoped(id) => id,
        }
    }

    pub(crate) fn is_scoped(&self) -> bool {
        matches!(self, Self::Scoped(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_keyed_by_their_digits() {
        for input in [
            "+16505551234",
            "+1 (650) 555-1234",
            "16505551234",
            "1-650-555-1234",
        ] {
            assert_eq!(
                UserId::parse_phone(input),
                Some(UserId::Phone("16505551234".into())),
                "{input}"
            );
        }
        for input in [
            "",
            "+",
            "12345",
            "1234567890123456",
            "+1 650 555 1234 x9",
            "１６５０５５５１２３４",
        ] {
            assert_eq!(UserId::parse_phone(input), None, "{input}");
        }
    }

    #[test]
    fn bsuids_keep_their_form() {
        let id = UserId::parse_scoped("US.13491208655302741918").expect("a BSUID");
        assert_eq!(id.key(), "US.13491208655302741918");
        assert!(id.is_scoped());
        for input in [
            "US13491208655302741918",
            "us.1349",
            "USA.1",
            "US.",
            "US.12-3",
            "16505551234",
        ] {
            assert_eq!(UserId::parse_scoped(input), None, "{input}");
        }
        assert_eq!(
            UserId::parse("+1 650 555 1234").map(|u| u.key().to_owned()),
            Some("16505551234".into())
        );
        assert!(UserId::parse("BR.99").is_some_and(|u| u.is_scoped()));
    }
}
