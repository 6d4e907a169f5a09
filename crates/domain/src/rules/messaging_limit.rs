//! Meta's messaging limit as it reports it: a tier name on the phone
//! number (`whatsapp_business_manager_messaging_limit`, or the deprecated
//! `messaging_limit_tier`), or a number in the `business_capability_update`
//! webhook. The limit is unique users per moving 24 h, per business
//! portfolio.

/// A portfolio's messaging limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagingLimit {
    /// At most this many unique users in a moving 24 h.
    Users(u64),
    Unlimited,
}

impl MessagingLimit {
    /// From a tier name (`TIER_2K`, `TIER_UNLIMITED`, ...) or a plain
    /// number; `None` for anything else.
    pub fn parse(tier: &str) -> Option<Self> {
        let tier = tier.trim().to_ascii_uppercase();
        if tier == "TIER_UNLIMITED" || tier == "UNLIMITED" {
            return Some(Self::Unlimited);
        }
        let figure = tier.strip_prefix("TIER_").unwrap_or(&tier);
        let (digits, factor) = match figure.strip_suffix('K') {
            Some(digits) => (digits, 1_000),
            None => (figure, 1),
        };
        let users: u64 = digits.parse().ok()?;
        (users > 0).then(|| Self::Users(users.saturating_mul(factor)))
    }

    /// The cap in users; `None` when unlimited.
    pub fn users(self) -> Option<u64> {
        match self {
            Self::Users(users) => Some(users),
            Self::Unlimited => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessagingLimit::*;
    use super::*;

    #[test]
    fn tiers_read_as_users_per_day() {
        assert_eq!(MessagingLimit::parse("TIER_250"), Some(Users(250)));
        assert_eq!(MessagingLimit::parse("TIER_2K"), Some(Users(2_000)));
        assert_eq!(MessagingLimit::parse("TIER_10K"), Some(Users(10_000)));
        assert_eq!(MessagingLimit::parse("TIER_100K"), Some(Users(100_000)));
        assert_eq!(MessagingLimit::parse("tier_1k"), Some(Users(1_000)));
        assert_eq!(MessagingLimit::parse("TIER_UNLIMITED"), Some(Unlimited));
        assert_eq!(MessagingLimit::parse("2000"), Some(Users(2_000)));
        assert_eq!(Unlimited.users(), None);
    }

    #[test]
    fn anything_else_is_unknown() {
        for odd in ["", "TIER_", "TIER_XK", "TIER_0", "-5", "TIER_2M"] {
            assert_eq!(MessagingLimit::parse(odd), None, "{odd}");
        }
    }
}
