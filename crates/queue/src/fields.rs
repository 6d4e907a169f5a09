//! The names a message's fields are stored under, in one place and one
//! vocabulary: its queue entry (what the api writes with XADD and a worker
//! reads back) and its record (the hash `GET /messages/{id}` reads) use the
//! same name for the same thing, and the Lua scripts get the lists from
//! here (see `scripts`).
//!
//! The message itself, in the entry and in the record:
//!
//! | field | holds |
//! | --- | --- |
//! | `snd` | sender name |
//! | `cli` | client name |
//! | `rcpt` | recipient key (E.164 or BSUID) |
//! | `kind` | message type |
//! | `body` | Graph API body without `biz_opaque_callback_data` |
//! | `fb` | fallback template's Graph API body (optional) |
//! | `meta` | caller's metadata JSON (optional) |
//! | `exp` | `expires_at`, Unix ms (optional): not sent after it |
//! | `cb` | `callback_url` (optional): where its status events are POSTed |
//! | `tc` | the template's category (`MARKETING`, `UTILITY`, `AUTHENTICATION`) for a template message, from the WABA's registry at `/send` (optional: unknown when the registry did not know it) |
//! | `ftc` | the same for its `fallback_template` (optional) |
//!
//! Its progress, kept in the record and carried by an entry that queues the
//! message again:
//!
//! | field | holds |
//! | --- | --- |
//! | `id` | the message id, in an entry only when it is not `<pnid>-<entry id>` (a retry or a replay) |
//! | `attempts` | attempts made so far |
//! | `fallback_used` | `1` once the fallback template is the one to send |
//! | `lane` | in the record only: `t` or `b`, the stream the message is queued in (an entry's is the stream it is in), so that a message queued again keeps its priority |
//! | `due_ms` | when the message became due (Unix ms), when that was not its acceptance: its `send_after` (promoted) or its replay; its age counts from then |
//!
//! Records and entries written before the vocabulary was one used other
//! names for some fields ([`LEGACY`]); readers accept those too, until no
//! such record (7 days) or requeued entry can be left.

use std::collections::HashMap;

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
pub(crate) const TEMPLATE_CATEGORY: &str = "tc";
pub(crate) const FALLBACK_CATEGORY: &str = "ftc";
pub(crate) const ATTEMPTS: &str = "attempts";
pub(crate) const FALLBACK_USED: &str = "fallback_used";
pub(crate) const DUE: &str = "due_ms";
pub(crate) const LANE: &str = "lane";

/// The message's own fields, for copying a message between entry, record
/// and dead letter.
pub(crate) const MESSAGE: [&str; 11] = [
    SENDER,
    CLIENT,
    RECIPIENT,
    KIND,
    BODY,
    FALLBACK,
    METADATA,
    EXPIRES,
    CALLBACK,
    TEMPLATE_CATEGORY,
    FALLBACK_CATEGORY,
];

/// Of [`MESSAGE`], those every message has (written even when empty).
pub(crate) const REQUIRED: [&str; 5] = [SENDER, CLIENT, RECIPIENT, KIND, BODY];

/// `(field, the name it had before)`: records kept `sender`, `client`,
/// `to`, `metadata` and `callback_url`; entries queued again `att`, `fbu`
/// and `due`.
pub(crate) const LEGACY: [(&str, &str); 8] = [
    (SENDER, "sender"),
    (CLIENT, "client"),
    (RECIPIENT, "to"),
    (METADATA, "metadata"),
    (CALLBACK, "callback_url"),
    (ATTEMPTS, "att"),
    (FALLBACK_USED, "fbu"),
    (DUE, "due"),
];

/// The name `field` had before the vocabulary was one, if it had another.
pub(crate) fn legacy_name(field: &str) -> Option<&'static str> {
    LEGACY
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, legacy)| *legacy)
}

/// A field's text taken out of a record's `values`: under its name, or the
/// one it had before; an empty value counts as none.
pub(crate) fn take_text(values: &mut HashMap<String, String>, name: &str) -> Option<String> {
    let current = values.remove(name).filter(|v| !v.is_empty());
    current.or_else(|| values.remove(legacy_name(name)?).filter(|v| !v.is_empty()))
}

/// The entry's field/value pairs for a new message.
pub(crate) fn of_new<'a>(m: &'a NewMessage<'a>) -> impl Iterator<Item = (&'static str, &'a str)> {
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
        m.template_category.map(|c| (TEMPLATE_CATEGORY, c.as_str())),
        m.fallback_category.map(|c| (FALLBACK_CATEGORY, c.as_str())),
    ]
    .into_iter()
    .flatten()
}

/// `XADD <queue> * <fields>`.
pub(crate) fn xadd(m: &NewMessage<'_>) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(crate::keys::stream(m.phone_number_id, m.lane))
        .arg("*");
    for (field, value) in of_new(m) {
        cmd.arg(field).arg(value);
    }
    cmd
}
