//! Meta's rules for uploaded media: which MIME types the Cloud API takes,
//! what kind of message each one makes, and the largest file of each type.
//! Plain functions over one table, so that the api checks a file before
//! (and while) it uploads it, and nothing Meta would refuse leaves the
//! gateway.
//!
//! | kind | types | at most |
//! | --- | --- | --- |
//! | image | `image/jpeg`, `image/png` | 5 MB |
//! | audio | `audio/aac`, `audio/amr`, `audio/mpeg` (mp3), `audio/mp4` (m4a), `audio/ogg` (opus) | 16 MB |
//! | video | `video/mp4`, `video/3gpp` | 16 MB |
//! | document | `text/plain`, `application/pdf`, Word, Excel and PowerPoint (old and OOXML) | 100 MB |
//! | sticker | `image/webp` | 500 KB (Meta: 100 KB, animated 500 KB) |
//!
//! Meta says "MB" without saying which: a megabyte is taken as 1,048,576
//! bytes here ([`MB`]). A sticker's limit depends on whether it is
//! animated, which a stream cannot know before its end; the larger one is
//! applied and Meta judges the rest.

use std::time::Duration;

use crate::MessageKind;

/// One megabyte, as these limits count it.
pub const MB: u64 = 1024 * 1024;
/// One kilobyte, as these limits count it.
pub const KB: u64 = 1024;

/// How long Meta keeps an uploaded media id usable: 30 days.
pub const MEDIA_ID_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest media id taken (Meta's are about 16 digits).
pub const MEDIA_ID_MAX: usize = 128;

/// Whether `id` has the shape of a media id as Meta writes them: 1 to
/// [`MEDIA_ID_MAX`] letters, digits, `_`, `-` or `.` (so it is also safe in
/// a URL path).
pub fn is_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MEDIA_ID_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// One MIME type Meta takes, its kind and its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRule {
    pub mime_type: &'static str,
    /// The message type a file of it is sent as.
    pub kind: MessageKind,
    pub max_bytes: u64,
}

const fn rule(mime_type: &'static str, kind: MessageKind, max_bytes: u64) -> MediaRule {
    MediaRule {
        mime_type,
        kind,
        max_bytes,
    }
}

/// Every MIME type Meta takes, as its documentation lists them.
pub const MEDIA_RULES: [MediaRule; 18] = [
    rule("image/jpeg", MessageKind::Image, 5 * MB),
    rule("image/png", MessageKind::Image, 5 * MB),
    rule("audio/aac", MessageKind::Audio, 16 * MB),
    rule("audio/amr", MessageKind::Audio, 16 * MB),
    rule("audio/mpeg", MessageKind::Audio, 16 * MB),
    rule("audio/mp4", MessageKind::Audio, 16 * MB),
    rule("audio/ogg", MessageKind::Audio, 16 * MB),
    rule("video/mp4", MessageKind::Video, 16 * MB),
    rule("video/3gpp", MessageKind::Video, 16 * MB),
    rule("text/plain", MessageKind::Document, 100 * MB),
    rule("application/pdf", MessageKind::Document, 100 * MB),
    rule("application/msword", MessageKind::Document, 100 * MB),
    rule(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        MessageKind::Document,
        100 * MB,
    ),
    rule("application/vnd.ms-excel", MessageKind::Document, 100 * MB),
    rule(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        MessageKind::Document,
        100 * MB,
    ),
    rule(
        "application/vnd.ms-powerpoint",
        MessageKind::Document,
        100 * MB,
    ),
    rule(
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        MessageKind::Document,
        100 * MB,
    ),
    rule("image/webp", MessageKind::Sticker, 500 * KB),
];

/// Common spellings of listed types, and the type Meta is told instead.
const ALIASES: [(&str, &str); 3] = [
    ("image/jpg", "image/jpeg"),
    ("image/pjpeg", "image/jpeg"),
    ("audio/mp3", "audio/mpeg"),
];

/// The largest file of any type: what a request carrying one may weigh.
pub const MEDIA_MAX_BYTES: u64 = 100 * MB;

/// Why a file cannot be uploaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaRefusal {
    #[error(
        "{mime_type:?} is not a type WhatsApp takes; use one of {}",
        allowed_types()
    )]
    Unsupported { mime_type: String },
    #[error("{} is at most {}", rule.mime_type, size_text(rule.max_bytes))]
    TooLarge { rule: MediaRule },
}

/// The rule for a `Content-Type` (any case, parameters such as
/// `; codecs=opus` ignored, `image/jpg` read as `image/jpeg`), or why
/// there is none. The rule's `mime_type` is what Meta is told.
pub fn media_rule(content_type: &str) -> Result<MediaRule, MediaRefusal> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let essence = ALIASES
        .iter()
        .find(|(alias, _)| *alias == essence)
        .map_or(essence.as_str(), |(_, listed)| listed);
    MEDIA_RULES
        .iter()
        .find(|r| r.mime_type == essence)
        .copied()
        .ok_or(MediaRefusal::Unsupported {
            mime_type: content_type.trim().to_owned(),
        })
}

impl MediaRule {
    /// Whether a file of `bytes` bytes (or what was seen of it so far) is
    /// within the limit.
    pub fn check_size(&self, bytes: u64) -> Result<(), MediaRefusal> {
        if bytes > self.max_bytes {
            Err(MediaRefusal::TooLarge { rule: *self })
        } else {
            Ok(())
        }
    }
}

/// The types Meta takes, for messages: `image/jpeg, image/png, ...`.
pub fn allowed_types() -> String {
    MEDIA_RULES
        .iter()
        .map(|r| r.mime_type)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `5 MB`, `500 KB`, or bytes.
pub fn size_text(bytes: u64) -> String {
    if bytes.is_multiple_of(MB) {
        format!("{} MB", bytes / MB)
    } else if bytes.is_multiple_of(KB) {
        format!("{} KB", bytes / KB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether an uploaded media id whose lifetime ends at `expires_at_ms`
/// (Unix ms) can still be sent at `now_ms`.
pub fn media_id_usable(expires_at_ms: i64, now_ms: i64) -> bool {
    now_ms < expires_at_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_meta_lists_has_its_kind_and_limit() {
        let table = [
            ("image/jpeg", MessageKind::Image, 5 * MB),
            ("image/png", MessageKind::Image, 5 * MB),
            ("audio/aac", MessageKind::Audio, 16 * MB),
            ("audio/amr", MessageKind::Audio, 16 * MB),
            ("audio/mpeg", MessageKind::Audio, 16 * MB),
            ("audio/mp4", MessageKind::Audio, 16 * MB),
            ("audio/ogg", MessageKind::Audio, 16 * MB),
            ("video/mp4", MessageKind::Video, 16 * MB),
            ("video/3gpp", MessageKind::Video, 16 * MB),
            ("application/pdf", MessageKind::Document, 100 * MB),
            ("text/plain", MessageKind::Document, 100 * MB),
            ("image/webp", MessageKind::Sticker, 500 * KB),
        ];
        for (mime, kind, max) in table {
            let rule = media_rule(mime).expect(mime);
            assert_eq!((rule.kind, rule.max_bytes), (kind, max), "{mime}");
        }
    }

    #[test]
    fn case_and_parameters_do_not_matter() {
        assert_eq!(
            media_rule("audio/ogg; codecs=opus").map(|r| r.mime_type),
            Ok("audio/ogg")
        );
        assert_eq!(
            media_rule(" IMAGE/JPEG ").map(|r| r.kind),
            Ok(MessageKind::Image)
        );
    }

    #[test]
    fn other_types_are_refused_naming_the_allowed_ones() {
        for mime in [
            "image/gif",
            "application/x-msdownload",
            "",
            "image",
            "video/webm",
        ] {
            let refusal = media_rule(mime).expect_err(mime);
            assert!(matches!(refusal, MediaRefusal::Unsupported { .. }));
            let text = refusal.to_string();
            assert!(
                text.contains("image/jpeg") && text.contains("application/pdf"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_file_may_reach_its_limit_but_not_pass_it() {
        let jpeg = media_rule("image/jpeg").expect("jpeg");
        assert_eq!(jpeg.check_size(5 * MB), Ok(()));
        let refusal = jpeg.check_size(5 * MB + 1).expect_err("over");
        assert_eq!(refusal.to_string(), "image/jpeg is at most 5 MB");
        let sticker = media_rule("image/webp").expect("webp");
        assert_eq!(
            sticker.check_size(500 * KB + 1).map_err(|e| e.to_string()),
            Err("image/webp is at most 500 KB".to_owned())
        );
    }

    #[test]
    fn no_limit_is_above_the_largest() {
        assert!(MEDIA_RULES.iter().all(|r| r.max_bytes <= MEDIA_MAX_BYTES));
        assert!(MEDIA_RULES.iter().any(|r| r.max_bytes == MEDIA_MAX_BYTES));
    }

    #[test]
    fn an_id_is_usable_until_its_expiry() {
        assert!(media_id_usable(1_000, 999));
        assert!(!media_id_usable(1_000, 1_000));
        assert!(!media_id_usable(1_000, 5_000));
    }

    #[test]
    fn media_ids_are_plain_tokens() {
        assert!(is_media_id("1037543291543636"));
        assert!(is_media_id("a_b-c.d"));
        for bad in ["", "a/b", "a?b", "a b", &"1".repeat(MEDIA_ID_MAX + 1)] {
            assert!(!is_media_id(bad), "{bad:?}");
        }
        assert!(is_media_id(&"1".repeat(MEDIA_ID_MAX)));
    }

    #[test]
    fn every_kind_of_the_table_is_a_media_message() {
        assert!(MEDIA_RULES.iter().all(|r| r.kind.is_media()));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(16 * MB), "16 MB");
        assert_eq!(size_text(100 * KB), "100 KB");
        assert_eq!(size_text(1_000), "1000 bytes");
    }
}
