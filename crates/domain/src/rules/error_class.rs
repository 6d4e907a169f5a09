//! What an answer from Meta means for the gateway. Owns the mapping from
//! Meta's `error.code` (and from failures that carry no code: timeouts, broken
//! connections, bare HTTP statuses) to an [`ErrorClass`], following the table
//! "Error codes and what the gateway does" in `shared/cloud-api.md`.
//!
//! Guarantees: classification looks only at the code, never at the HTTP
//! status of an answer that has one (Meta sends throttling as 400 or 429);
//! every input maps to a class; and a code the table does not know is
//! [`ErrorClass::Unknown`], which is permanent, so an unexpected answer
//! dead-letters one message instead of retrying a whole backlog into it.

/// What Meta's answer means for the gateway (the table in cloud-api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 130429: the sender is over its throughput; back off the whole sender.
    SenderThroughput,
    /// 131056: too many messages to one recipient; delay that recipient only.
    PairLimit,
    /// 131057: the number is in maintenance (e.g. a throughput upgrade).
    Maintenance,
    /// 1, 2, 131000, 131016, 133004, and failures without a Meta code: HTTP
    /// 5xx, timeouts, dropped connections.
    Transient,
    /// 4, 80007, 80008: the hourly Graph call quota.
    CallQuota,
    /// 131047: the recipient's 24-hour window is closed.
    WindowClosed,
    /// 131026, 131021, 130403, 131030, 130497: this recipient cannot be reached.
    RecipientPermanent,
    /// 100, 131008, 131009, 131051, 131053, 132000, 132005, 132007, 132012,
    /// 132068, 135000: the request itself is wrong.
    RequestPermanent,
    /// 132001, 132015, 132016: the template does not exist, or is paused or disabled.
    TemplateUnusable,
    /// 131049, 131050, 130472: Meta suppressed a marketing message.
    MarketingSuppressed,
    /// 0, 3, 10, 190, 200..=299, 368, 131005, 131031, 131037, 131042, 131045,
    /// 133000, 133010: the sender itself cannot send (token, account, payment).
    SenderLevel,
    /// 131048: the sender hit Meta's spam rate limit.
    Quality,
    /// Any other code: treated as permanent (fail, dead-letter) so an unknown
    /// answer never burns a backlog.
    Unknown,
}

/// Failures that are not Meta error objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No answer within the configured timeout.
    Timeout,
    /// The connection could not be made or broke before an answer.
    Connection,
    /// An HTTP status whose body is not a Meta error object.
    HttpStatus(u16),
    /// An answer that parses neither as a success nor as a Meta error.
    InvalidResponse,
}

/// The class of a Meta `error.code`.
pub fn classify_code(code: i64) -> ErrorClass {
    use ErrorClass::*;
    match code {
        130429 => SenderThroughput,
        131056 => PairLimit,
        131057 => Maintenance,
        1 | 2 | 131000 | 131016 | 133004 => Transient,
        4 | 80007 | 80008 => CallQuota,
        131047 => WindowClosed,
        131026 | 131021 | 130403 | 131030 | 130497 => RecipientPermanent,
        100 | 131008 | 131009 | 131051 | 131053 | 132000 | 132005 | 132007 | 132012 | 132068
        | 135000 => RequestPermanent,
        132001 | 132015 | 132016 => TemplateUnusable,
        131049 | 131050 | 130472 => MarketingSuppressed,
        0
        | 3
        | 10
        | 190
        | 200..=299
        | 368
        | 131005
        | 131031
        | 131037
        | 131042
        | 131045
        | 133000
        | 133010 => SenderLevel,
        131048 => Quality,
        _ => Unknown,
    }
}

/// The class of a failure that carries no Meta code.
///
/// 5xx, timeouts and broken connections are [`ErrorClass::Transient`]. A bare
/// 429 is [`ErrorClass::SenderThroughput`]: whatever sent it (Meta or a proxy
/// in front of it) is asking the sender to slow down. Any other status and an
/// answer that cannot be read are [`ErrorClass::Unknown`]: Meta may have
/// accepted the message, and failing it is better than sending it twice.
pub fn classify_transport(failure: TransportFailure) -> ErrorClass {
    match failure {
        TransportFailure::Timeout | TransportFailure::Connection => ErrorClass::Transient,
        TransportFailure::HttpStatus(429) => ErrorClass::SenderThroughput,
        TransportFailure::HttpStatus(500..=599) => ErrorClass::Transient,
        TransportFailure::HttpStatus(_) | TransportFailure::InvalidResponse => ErrorClass::Unknown,
    }
}

impl ErrorClass {
    /// Every class, e.g. to pre-register metric label values.
    pub const ALL: [ErrorClass; 13] = [
        Self::SenderThroughput,
        Self::PairLimit,
        Self::Maintenance,
        Self::Transient,
        Self::CallQuota,
        Self::WindowClosed,
        Self::RecipientPermanent,
        Self::RequestPermanent,
        Self::TemplateUnusable,
        Self::MarketingSuppressed,
        Self::SenderLevel,
        Self::Quality,
        Self::Unknown,
    ];

    /// A stable snake_case name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SenderThroughput => "sender_throughput",
            Self::PairLimit => "pair_limit",
            Self::Maintenance => "maintenance",
            Self::Transient => "transient",
            Self::CallQuota => "call_quota",
            Self::WindowClosed => "window_closed",
            Self::RecipientPermanent => "recipient_permanent",
            Self::RequestPermanent => "request_permanent",
            Self::TemplateUnusable => "template_unusable",
            Self::MarketingSuppressed => "marketing_suppressed",
            Self::SenderLevel => "sender_level",
            Self::Quality => "quality",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the same message may simply be sent again later (after a
    /// delay the retry policy chooses). The fallback resend after
    /// [`ErrorClass::WindowClosed`] is a different message, so it is not a retry.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::SenderThroughput
                | Self::PairLimit
                | Self::Maintenance
                | Self::Transient
                | Self::CallQuota
        )
    }

    /// Whether the sender must stop sending altogether (its queue is kept)
    /// until someone fixes the cause: no message of this sender can succeed.
    pub fn pauses_sender(self) -> bool {
        matches!(self, Self::SenderLevel | Self::Quality)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    /// Every code in cloud-api.md's table, with its class.
    const TABLE: &[(i64, ErrorClass)] = &[
        (130429, SenderThroughput),
        (131056, PairLimit),
        (131057, Maintenance),
        (1, Transient),
        (2, Transient),
        (131000, Transient),
        (131016, Transient),
        (133004, Transient),
        (4, CallQuota),
        (80007, CallQuota),
        (80008, CallQuota),
        (131047, WindowClosed),
        (131026, RecipientPermanent),
        (131021, RecipientPermanent),
        (130403, RecipientPermanent),
        (131030, RecipientPermanent),
        (130497, RecipientPermanent),
        (100, RequestPermanent),
        (131008, RequestPermanent),
        (131009, RequestPermanent),
        (131051, RequestPermanent),
        (131053, RequestPermanent),
        (132000, RequestPermanent),
        (132005, RequestPermanent),
        (132007, RequestPermanent),
        (132012, RequestPermanent),
        (132068, RequestPermanent),
        (135000, RequestPermanent),
        (132001, TemplateUnusable),
        (132015, TemplateUnusable),
        (132016, TemplateUnusable),
        (131049, MarketingSuppressed),
        (131050, MarketingSuppressed),
        (130472, MarketingSuppressed),
        (0, SenderLevel),
        (3, SenderLevel),
        (10, SenderLevel),
        (190, SenderLevel),
        (200, SenderLevel),
        (250, SenderLevel),
        (299, SenderLevel),
        (368, SenderLevel),
        (131005, SenderLevel),
        (131031, SenderLevel),
        (131037, SenderLevel),
        (131042, SenderLevel),
        (131045, SenderLevel),
        (133000, SenderLevel),
        (133010, SenderLevel),
        (131048, Quality),
    ];

    #[test]
    fn every_documented_code_has_its_class() {
        for &(code, class) in TABLE {
            assert_eq!(classify_code(code), class, "code {code}");
        }
    }

    #[test]
    fn codes_outside_the_table_are_unknown() {
        for code in [
            -1,
            5,
            99,
            101,
            199,
            300,
            131001,
            131058,
            133005,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(classify_code(code), Unknown, "code {code}");
        }
    }

    #[test]
    fn transport_failures() {
        use TransportFailure::*;
        let cases = [
            (Timeout, Transient),
            (Connection, Transient),
            (HttpStatus(500), Transient),
            (HttpStatus(502), Transient),
            (HttpStatus(503), Transient),
            (HttpStatus(599), Transient),
            (HttpStatus(429), SenderThroughput),
            (HttpStatus(400), Unknown),
            (HttpStatus(404), Unknown),
            (HttpStatus(499), Unknown),
            (HttpStatus(200), Unknown),
            (HttpStatus(302), Unknown),
            (HttpStatus(600), Unknown),
            (HttpStatus(0), Unknown),
            (InvalidResponse, Unknown),
        ];
        for (failure, class) in cases {
            assert_eq!(classify_transport(failure), class, "{failure:?}");
        }
    }

    #[test]
    fn actions_of_each_class() {
        // (class, retryable, pauses the sender)
        let cases = [
            (SenderThroughput, true, false),
            (PairLimit, true, false),
            (Maintenance, true, false),
            (Transient, true, false),
            (CallQuota, true, false),
            (WindowClosed, false, false),
            (RecipientPermanent, false, false),
            (RequestPermanent, false, false),
            (TemplateUnusable, false, false),
            (MarketingSuppressed, false, false),
            (SenderLevel, false, true),
            (Quality, false, true),
            (Unknown, false, false),
        ];
        assert_eq!(cases.len(), ErrorClass::ALL.len());
        for (class, retryable, pauses) in cases {
            assert_eq!(class.is_retryable(), retryable, "{class:?}");
            assert_eq!(class.pauses_sender(), pauses, "{class:?}");
        }
    }

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for class in ErrorClass::ALL {
            let label = class.as_str();
            assert!(seen.insert(label), "duplicate label {label}");
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }
}
