//! Who must not get what, from what Meta and users said: a user who opted
//! out of marketing (131050, or a keyword such as STOP), a user at Meta's
//! marketing cap (131049: no marketing to them for 24 h; retrying makes it
//! worse), a number not on WhatsApp (131026: nothing for a while). A
//! suppressed message fails without a call to Meta. Utility and
//! authentication templates are not held back by a marketing suppression.

use std::time::Duration;

/// What a suppression holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Marketing templates only.
    Marketing,
    /// Every message.
    All,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "marketing",
            Self::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "marketing" => Some(Self::Marketing),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    /// Whether a suppression of this scope holds back a message that is
    /// (or is not) a marketing template.
    pub fn holds_back(self, marketing: bool) -> bool {
        match self {
            Self::All => true,
            Self::Marketing => marketing,
        }
    }
}

/// The Meta code a keyword opt-out is recorded with: the same as Meta's own.
pub const OPTED_OUT: i64 = 131050;
/// Meta's per-user marketing cap.
pub const MARKETING_CAPPED: i64 = 131049;
/// The number is not on WhatsApp.
pub const NOT_ON_WHATSAPP: i64 = 131026;

/// How long Meta says not to send marketing after a 131049.
pub const MARKETING_CAP_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// The suppression a failure with Meta's `code` calls for: its scope and
/// how long it lasts (`None`: until cleared). `not_on_whatsapp_for` is the
/// configured pause for 131026.
pub fn for_failure(code: i64, not_on_whatsapp_for: Duration) -> Option<(Scope, Option<Duration>)> {
    match code {
        OPTED_OUT => Some((Scope::Marketing, None)),
        MARKETING_CAPPED => Some((Scope::Marketing, Some(MARKETING_CAP_PAUSE))),
        NOT_ON_WHATSAPP => Some((Scope::All, Some(not_on_whatsapp_for))),
        _ => None,
    }
}

/// What an inbound text says about marketing, by the configured keywords
/// (matched on the whole message, trimmed, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordAction {
    OptOut,
    OptIn,
}

pub fn keyword_action(text: &str, opt_out: &[String], opt_in: &[String]) -> Option<KeywordAction> {
    let said = text.trim().trim_end_matches(['.', '!']).trim();
    let matches = |words: &[String]| words.iter().any(|w| w.eq_ignore_ascii_case(said));
    if matches(opt_out) {
        Some(KeywordAction::OptOut)
    } else if matches(opt_in) {
        Some(KeywordAction::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

    #[test]
    fn meta_s_codes_map_to_scopes_and_durations() {
        assert_eq!(for_failure(131050, MONTH), Some((Scope::Marketing, None)));
        assert_eq!(
            for_failure(131049, MONTH),
            Some((Scope::Marketing, Some(MARKETING_CAP_PAUSE)))
        );
        assert_eq!(for_failure(131026, MONTH), Some((Scope::All, Some(MONTH))));
        assert_eq!(for_failure(131047, MONTH), None);
        assert_eq!(for_failure(130429, MONTH), None);
    }

    #[test]
    fn marketing_suppression_spares_other_templates() {
        assert!(Scope::Marketing.holds_back(true));
        assert!(!Scope::Marketing.holds_back(false));
        assert!(Scope::All.holds_back(false));
    }

    #[test]
    fn keywords_match_the_whole_message_in_any_case() {
        let out = vec!["STOP".to_owned(), "BAJA".to_owned()];
        let inn = vec!["START".to_owned()];
        assert_eq!(
            keyword_action(" stop ", &out, &inn),
            Some(KeywordAction::OptOut)
        );
        assert_eq!(
            keyword_action("Baja.", &out, &inn),
            Some(KeywordAction::OptOut)
        );
        assert_eq!(
            keyword_action("start!", &out, &inn),
            Some(KeywordAction::OptIn)
        );
        assert_eq!(keyword_action("please stop sending", &out, &inn), None);
        assert_eq!(keyword_action("", &out, &inn), None);
    }
}
