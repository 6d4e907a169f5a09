//! Media messages (image, document, audio, video, sticker) and the media in
//! an interactive header: by the `id` of uploaded media or by an https
//! `link` Meta fetches itself, never both; a caption where WhatsApp shows one.
//! File types and sizes are Meta's to check: we never see the bytes.

use serde_json::Value;

use super::MessageKind;
use super::fields::{ANY, NON_EMPTY, Object};
use crate::FieldError;

const CAPTION_MAX: usize = 1024;

pub(super) fn check(kind: MessageKind, value: &Value, path: &str) -> Result<(), FieldError> {
    let media = Object::new(value, path)?;
    match (media.get("id"), media.get("link")) {
        (Some(_), Some(_)) => {
            let message = format!("{path} has both id and link; give one of them");
            return Err(FieldError::invalid(path.to_owned(), message));
        }
        (None, None) => {
            let message = format!("{path} needs a link (an https URL) or the id of uploaded media");
            return Err(FieldError::new(
                media.field_path("link"),
                "missing_field",
                message,
            ));
        }
        (Some(_), None) => media.string("id", NON_EMPTY).map(drop)?,
        (None, Some(_)) => media.https_url("link").map(drop)?,
    }
    // WhatsApp shows no caption under audio or a sticker, and Meta rejects one.
    let captioned = matches!(
        kind,
        MessageKind::Image | MessageKind::Video | MessageKind::Document
    );
    if captioned {
        media.optional_string("caption", 0..=CAPTION_MAX)?;
    } else if media.get("caption").is_some() {
        let path = media.field_path("caption");
        let message = format!("{path} is not allowed: {} has no caption", kind.as_str());
        return Err(FieldError::invalid(path, message));
    }
    if kind == MessageKind::Document {
        media.optional_string("filename", ANY)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{assert_accepts, assert_rejects};

    #[test]
    fn media_by_id_or_https_link() {
        assert_accepts(&[
            (
                "image by link",
                json!({"type": "image", "image": {"link": "https://example.com/a.jpg", "caption": "Look"}}),
            ),
            (
                "image by id",
                json!({"type": "image", "image": {"id": "1479537139650973"}}),
            ),
            (
                "document",
                json!({"type": "document", "document": {"link": "https://example.com/i.pdf", "caption": "Invoice", "filename": "invoice.pdf"}}),
            ),
            (
                "audio",
                json!({"type": "audio", "audio": {"id": "1479537139650973"}}),
            ),
            (
                "video",
                json!({"type": "video", "video": {"link": "https://example.com/v.mp4", "caption": "c".repeat(1024)}}),
            ),
            (
                "sticker",
                json!({"type": "sticker", "sticker": {"link": "https://example.com/s.webp"}}),
            ),
            (
                "empty caption",
                json!({"type": "image", "image": {"id": "1", "caption": ""}}),
            ),
        ]);
        assert_rejects(&[
            (
                "neither",
                json!({"type": "image", "image": {"caption": "x"}}),
                "image.link",
                "missing_field",
            ),
            (
                "both",
                json!({"type": "image", "image": {"id": "1", "link": "https://example.com/a.jpg"}}),
                "image",
                "invalid_value",
            ),
            (
                "http link",
                json!({"type": "image", "image": {"link": "http://example.com/a.jpg"}}),
                "image.link",
                "invalid_url",
            ),
            (
                "no host",
                json!({"type": "video", "video": {"link": "https:///v.mp4"}}),
                "video.link",
                "invalid_url",
            ),
            (
                "link a number",
                json!({"type": "image", "image": {"link": 1}}),
                "image.link",
                "invalid_type",
            ),
            (
                "empty id",
                json!({"type": "audio", "audio": {"id": ""}}),
                "audio.id",
                "empty",
            ),
            (
                "numeric id",
                json!({"type": "audio", "audio": {"id": 1479537139650973_u64}}),
                "audio.id",
                "invalid_type",
            ),
            (
                "caption too long",
                json!({"type": "image", "image": {"id": "1", "caption": "c".repeat(1025)}}),
                "image.caption",
                "too_long",
            ),
            (
                "audio caption",
                json!({"type": "audio", "audio": {"id": "1", "caption": "x"}}),
                "audio.caption",
                "invalid_value",
            ),
            (
                "sticker caption",
                json!({"type": "sticker", "sticker": {"id": "1", "caption": "x"}}),
                "sticker.caption",
                "invalid_value",
            ),
            (
                "filename a number",
                json!({"type": "document", "document": {"id": "1", "filename": 3}}),
                "document.filename",
                "invalid_type",
            ),
            (
                "media an array",
                json!({"type": "image", "image": ["https://example.com/a.jpg"]}),
                "image",
                "invalid_type",
            ),
        ]);
    }
}
