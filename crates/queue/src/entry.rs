//! The fields of a queue stream entry: what the api writes with XADD and
//! what a worker reads back, named in one place.
//!
//! | field | holds |
//! | --- | --- |
//! | `id` | the message id, only when it is not `<pnid>-<entry id>` (a retry or a replay) |
//! | `snd` | sender name |
//! | `cli` | client name |
//! | `rcpt` | recipient key (E.164 or BSUID) |
//! | `kind` | message type |
//! | `body` | Graph API body without `biz_opaque_callback_data` |
//! | `fb` | fallback template's Graph API body (optional) |
//! | `meta` | caller's metadata JSON (optional) |
//! | `exp` | `expires_at`, Unix ms (optional): not sent after it |
//! | `cb` | `callback_url` (optional): where its status events are POSTed |
//! | `att` | attempts already made (only on a message queued again after an asynchronous failure) |
//! | `fbu` | `1` when the fallback template is to be sent (same) |
//! | `due` | when the message became due (Unix ms), when that was not its acceptance: its `send_after` (promoted) or its replay; its age counts from then |

use crate::NewMessage;

pub(crate) const ID: &str = "id";
pub(crate) const SENDER: &str = "snd";
pub(crate) const CLIENT: &str = "cli";
pub(crate) const RECIPIENT: &str = "rcpt";
pub(crate) const KIND: &str = "kind";
pub(crate) const BODY: &str = "body";
pub(crate) const FALLBACK: &str = "fb";
pub(crate) const METADATA: &str = "meta";
pub(crate) const EXPIRES: &str = "exp";
pub(crate) const CALLBACK: &str = "cb";
pub(crate) const ATTEMPTS: &str = "att";
pub(crate) const FALLBACK_USED: &str = "fbu";
pub(crate) const DUE: &str = "due";

/// Every field a queue entry may carry besides its id, for copying entries.
pub(crate) const ALL: [&str; 9] = [
    SENDER, CLIENT, RECIPIENT, KIND, BODY, FALLBACK, METADATA, EXPIRES, CALLBACK,
];

/// The entry's field/value pairs for a new message.
pub(crate) fn fields<'a>(m: &'a NewMessage<'a>) -> impl Iterator<Item = (&'static str, &'a str)> {
    [
        Some((SENDER, m.sender_name)),
        Some((CLIENT, m.client)),
        Some((RECIPIENT, m.recipient)),
        Some((KIND, m.kind)),
        Some((BODY, m.graph_body)),
        m.fallback_body.map(|b| (FALLBACK, b)),
        m.metadata.map(|b| (METADATA, b)),
        m.expires_at_ms.as_deref().map(|e| (EXPIRES, e)),
        m.callback_url.map(|c| (CALLBACK, c)),
    ]
    .into_iter()
    .flatten()
}

/// `XADD <queue> * <fields>`.
pub(crate) fn xadd(m: &NewMessage<'_>) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(crate::keys::stream(m.phone_number_id, m.lane))
        .arg("*");
    for (field, value) in fields(m) {
        cmd.arg(field).arg(value);
    }
    cmd
}
