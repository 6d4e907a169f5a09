//! Media on the Graph API: uploading a file for a number (`POST
//! /{version}/{phone_number_id}/media`, multipart with
//! `messaging_product=whatsapp`, `type` and `file`), reading a media id's
//! metadata (`GET /{version}/{media_id}?phone_number_id=...`: a short-lived
//! download `url`, `mime_type`, `sha256`, `file_size`) and downloading the
//! file from that `url` with the same bearer token.
//!
//! Files go through as streams both ways: the upload's body is whatever
//! stream the caller hands over (its memory is the caller's bound), and a
//! download answers the response itself, for the caller to stream on. A
//! transfer may take longer than a message send: it has its own deadline,
//! [`MEDIA_TRANSFER_TIMEOUT`]. Tokens travel only in the `Authorization`
//! header, marked sensitive, and errors carry no URL (a download URL is a
//! credential of its own for a few minutes).

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde::Deserialize;

use crate::{GraphClient, GraphError, bearer, meta_error, success_body};

/// The longest an upload or a download may take, start to end (a 100 MB
/// document at about 2 Mbit/s).
pub const MEDIA_TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

/// Meta's answer to an upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaUploaded {
    pub id: String,
}

/// Meta's metadata of a media id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaInfo {
    /// Where the file can be downloaded, with the token, for a few minutes.
    pub url: String,
    pub mime_type: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Meta sends a number; some answers carry it as a string.
    #[serde(default, deserialize_with = "number_or_string")]
    pub file_size: Option<u64>,
    pub id: String,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    Ok(match Option::<Size>::deserialize(d)? {
        Some(Size::Number(n)) => Some(n),
        Some(Size::Text(t)) => t.parse().ok(),
        None => None,
    })
}

/// Whether Meta's answer means the media is not there (any more): Meta
/// answers an unknown or deleted id with error 100 (HTTP 400) or a 404.
pub fn is_media_gone(error: &GraphError) -> bool {
    match error {
        GraphError::Meta {
            http_status, code, ..
        } => *code == 100 || *http_status == 404,
        GraphError::Http { http_status } => *http_status == 404,
        _ => false,
    }
}

impl GraphClient {
    /// Uploads a file of `mime_type` for `phone_number_id`; `file` is its
    /// content as a stream (an error in it aborts the request, and Meta
    /// then never sees a complete file).
    pub async fn upload_media(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        mime_type: &str,
        file_name: &str,
        file: reqwest::Body,
    ) -> Result<MediaUploaded, GraphError> {
        let part = reqwest::multipart::Part::stream(file)
            .file_name(file_name.to_owned())
            .mime_str(mime_type)
            .map_err(|_| GraphError::Config(format!("{mime_type:?} is not a MIME type")))?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime_type.to_owned())
            .part("file", part);
        let response = self
            .http
            .post(format!("{}/{phone_number_id}/media", self.versioned_base))
            .header(AUTHORIZATION, bearer(token)?)
            .multipart(form)
            .timeout(MEDIA_TRANSFER_TIMEOUT)
            .send()
            .await
            .map_err(|e| GraphError::from_transport(e.without_url()))?;
        let bytes = success_body(response).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| GraphError::InvalidResponse(format!("media upload answered: {e}")))
    }

    /// The metadata of `media_id` as `phone_number_id` may see it.
    pub async fn media_info(
        &self,
        media_id: &str,
        phone_number_id: &str,
        token: &SecretString,
    ) -> Result<MediaInfo, GraphError> {
        self.get_json(media_id, &[("phone_number_id", phone_number_id)], token)
            .await
    }

    /// Starts downloading a file from the `url` of its [`MediaInfo`]: the
    /// response once its status is a success, for the caller to stream;
    /// Meta's error otherwise (a 404 once the URL expired).
    pub async fn download_media(
        &self,
        url: &str,
        token: &SecretString,
    ) -> Result<reqwest::Response, GraphError> {
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, bearer(token)?)
            .timeout(MEDIA_TRANSFER_TIMEOUT)
            .send()
            .await
            .map_err(|e| GraphError::from_transport(e.without_url()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(meta_error(response).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metas_metadata_parses_with_either_size_spelling() {
        let info: MediaInfo = serde_json::from_str(
            r#"{"messaging_product":"whatsapp","url":"https://lookaside.fbsbx.com/x","mime_type":"image/jpeg","sha256":"ab","file_size":"303833","id":"1037543291543636"}"#,
        )
        .expect("parses");
        assert_eq!(info.file_size, Some(303_833));
        let info: MediaInfo =
            serde_json::from_str(r#"{"url":"u","mime_type":"image/png","file_size":12,"id":"1"}"#)
                .expect("parses");
        assert_eq!((info.file_size, info.sha256), (Some(12), None));
    }

    #[test]
    fn an_unknown_id_or_a_404_means_gone() {
        let meta = |http_status, code| GraphError::Meta {
            http_status,
            code,
            message: String::new(),
            details: None,
            fbtrace_id: None,
        };
        assert!(is_media_gone(&meta(400, 100)));
        assert!(is_media_gone(&meta(404, 1)));
        assert!(is_media_gone(&GraphError::Http { http_status: 404 }));
        assert!(!is_media_gone(&meta(401, 190)));
        assert!(!is_media_gone(&GraphError::Timeout));
    }
}
