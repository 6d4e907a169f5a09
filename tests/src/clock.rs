//! Times as the API takes them.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now plus `offset`, in RFC 3339 (for `send_after` and `expires_at`).
pub fn rfc3339_in(offset: Duration) -> String {
    (OffsetDateTime::now_utc() + offset)
        .format(&Rfc3339)
        .expect("a time in range formats")
}
