//! `POST /media` and `GET /media/{media_id}`: media files between the
//! services and Meta, through the api, with the sender's access token
//! (which the services never see).
//!
//! An upload is `multipart/form-data` with `from` (a sender the client may
//! send from, as for `/send`) and then `file` (with its `Content-Type`;
//! Meta's own `type` field, if given, names it instead, and Meta's
//! `messaging_product` may be there too).
//! The type is checked against Meta's table (`gateway_domain::media_limits`)
//! before anything goes to Meta, and the size while the file streams
//! through: the file is never held whole, only a few chunks at a time
//! ([`CHUNKS_IN_FLIGHT`] between the client's request and Meta's), and
//! the upload to Meta is aborted (it never sees a complete file) at the
//! first byte over the type's limit. Meta's id is answered `201` with its
//! expiry, and remembered (`gateway_queue::MediaRecord`) so that `/send`
//! refuses it once Meta's 30 days are over.
//!
//! A download reads Meta's metadata of the id (for the sender's number),
//! then streams the file from Meta's short-lived URL to the caller with
//! its `Content-Type` and `Content-Length`; `404 media_not_found` when
//! Meta does not have it (any more). Both count in `gateway_media_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::TryStreamExt;
use gateway_config::SenderSettings;
use gateway_domain::FieldError;
use gateway_domain::media_limits::{
    MEDIA_ID_LIFETIME, MEDIA_ID_MAX, MediaRefusal, MediaRule, is_media_id, media_rule,
};
use gateway_graph::{GraphError, is_media_gone};
use gateway_queue::MediaRecord;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Client;
use crate::{ApiError, AppState};

/// Chunks of a file waiting between the client's request and the upload
/// to Meta: with the chunk being read and the one being written, the
/// bound on an upload's memory.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 2;

/// Room for the multipart framing and the `from` field beside the file.
pub(crate) const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// The longest `from` taken.
const FROM_MAX: usize = 256;

/// The file name Meta is given when the client gives none.
const DEFAULT_FILE_NAME: &str = "file";

/// `POST /media`.
pub(crate) async fn upload(
    State(state): State<AppState>,
    client: Client,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::MalformedMultipart(e.body_text()))?;
    let mut from: Option<String> = None;
    let mut declared: Option<String> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("from") => from = Some(small_text(&mut field, "from").await?),
            // Meta's own form fields, for a form copied from its documentation:
            // `type` names the file's type as at Meta.
            Some("messaging_product") => {
                let product = small_text(&mut field, "messaging_product").await?;
                if product != "whatsapp" {
                    return Err(FieldError::invalid("messaging_product", "must be whatsapp").into());
                }
            }
            Some("type") => declared = Some(small_text(&mut field, "type").await?),
            Some("file") => {
                // The sender must be known before the file streams: its
                // token opens the upload.
                let from = from.as_deref().ok_or_else(|| {
                    FieldError::new(
                        "from",
                        "missing_field",
                        "from is required, before file in the form",
                    )
                })?;
                let sender = named_sender(&state, &client, from)?;
                let counted = |outcome: &str| {
                    state
                        .metrics
                        .media
                        .with_label_values(&[sender.name.as_str(), "upload", outcome])
                        .inc();
                };
                let result = upload_file(&state, &sender, declared.as_deref(), &mut field).await;
                counted(match &result {
                    Ok(_) => "ok",
                    Err(ApiError::MediaRefused(MediaRefusal::Unsupported { .. })) => {
                        "unsupported_type"
                    }
                    Err(ApiError::MediaRefused(MediaRefusal::TooLarge { .. })) => "too_large",
                    Err(_) => "failed",
                });
                return result.map(|body| (StatusCode::CREATED, Json(body)));
            }
            Some(other) => {
                return Err(FieldError::new(
                    other.to_owned(),
                    "unknown_field",
                    format!("unknown field {other}; the form has from and file (and Meta's messaging_product and type)"),
                )
                .into());
            }
            None => {}
        }
    }
    Err(FieldError::missing(if from.is_none() { "from" } else { "file" }).into())
}

/// The sender a request names as `from`, by the api's one rule for it
/// ([`AppState::one_sender`]): known, and one the client may use.
fn named_sender(
    state: &AppState,
    client: &Client,
    from: &str,
) -> Result<Arc<SenderSettings>, ApiError> {
    let pnid = state.one_sender(client, Some(from))?;
    state.sender(&pnid).cloned().ok_or(ApiError::NotFound)
}

fn token(sender: &SenderSettings) -> Result<&SecretString, ApiError> {
    // Required of the api's configuration at start-up; absent only in a
    // process started with another role.
    sender.access_token.as_ref().ok_or_else(|| {
        ApiError::Graph(GraphError::Config(format!(
            "this process has no access token for sender {}",
            sender.name
        )))
    })
}

/// Streams the file field to Meta and remembers the id; the answer's body.
async fn upload_file(
    state: &AppState,
    sender: &SenderSettings,
    declared: Option<&str>,
    field: &mut Field<'_>,
) -> Result<Value, ApiError> {
    let rule = media_rule(declared.or(field.content_type()).unwrap_or_default())?;
    let file_name = field
        .file_name()
        .map(file_name)
        .unwrap_or_else(|| DEFAULT_FILE_NAME.to_owned());
    // Nothing goes to Meta for an empty file, nor before the first bytes.
    let first = field
        .chunk()
        .await
        .map_err(multipart_error)?
        .filter(|chunk| !chunk.is_empty())
        .ok_or_else(|| FieldError::new("file", "empty_file", "the file is empty"))?;
    rule.check_size(first.len() as u64)?;
    let token = token(sender)?;

    let (chunks, waiting) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(
        waiting,
        |mut waiting| async move { waiting.recv().await.map(|chunk| (chunk, waiting)) },
    ));
    let sent = AtomicU64::new(0);
    let upload = state.graph.upload_media(
        &sender.phone_number_id,
        token,
        rule.mime_type,
        &file_name,
        body,
    );
    let pump = pump(field, first, rule, chunks, &sent);
    tokio::pin!(upload, pump);
    let uploaded = tokio::select! {
        pumped = &mut pump => match pumped {
            // The end of the file (the pump let go of its end of the
            // channel): the form closes, Meta answers.
            Ok(()) => upload.await,
            Err(error) => return Err(error),
        },
        // Meta answered before the file ended: an error, which is the answer.
        uploaded = &mut upload => uploaded,
    };
    let uploaded = uploaded.map_err(|error| {
        tracing::warn!(sender = %sender.name, %error, "media upload failed");
        ApiError::Graph(error)
    })?;

    let now_ms = crate::send::unix_ms();
    let expires_at_ms =
        now_ms + i64::try_from(MEDIA_ID_LIFETIME.as_millis()).unwrap_or(i64::MAX / 2);
    let bytes = sent.load(Ordering::Relaxed);
    let record = MediaRecord {
        expires_at_ms,
        mime_type: rule.mime_type.to_owned(),
        bytes,
    };
    // Meta has the file: the id is the caller's even if Redis does not
    // take the record (then only its expiry goes unchecked at /send).
    if let Err(error) = state
        .queue
        .remember_media(&sender.phone_number_id, &uploaded.id, &record, now_ms)
        .await
    {
        tracing::warn!(sender = %sender.name, %error, "cannot remember an uploaded media id");
        state.metrics.redis_failed("remember_media");
    }
    Ok(json!({
        "id": uploaded.id,
        "expires_at": crate::messages::rfc3339(expires_at_ms),
        "mime_type": rule.mime_type,
        "bytes": bytes,
    }))
}

/// Moves the file's chunks into the upload, counting; at the first byte
/// over the limit, or when the client's body breaks off, the upload's body
/// ends in an error, so that Meta never sees a complete file.
async fn pump(
    field: &mut Field<'_>,
    first: Bytes,
    rule: MediaRule,
    chunks: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    sent: &AtomicU64,
) -> Result<(), ApiError> {
    let mut next = Some(first);
    loop {
        let Some(chunk) = next.take() else {
            return Ok(());
        };
        let total = sent.load(Ordering::Relaxed) + chunk.len() as u64;
        if let Err(refusal) = rule.check_size(total) {
            abort(&chunks, "the file is over its type's limit").await;
            return Err(refusal.into());
        }
        sent.store(total, Ordering::Relaxed);
        if chunks.send(Ok(chunk)).await.is_err() {
            // The upload ended first; its answer says why.
            return Ok(());
        }
        next = match field.chunk().await {
            Ok(chunk) => chunk,
            Err(error) => {
                abort(&chunks, "the client's upload broke off").await;
                return Err(multipart_error(error));
            }
        };
    }
}

async fn abort(chunks: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, why: &str) {
    let _ = chunks
        .send(Err(std::io::Error::other(why.to_owned())))
        .await;
}

/// A text field of a few bytes, read no further than its limit.
async fn small_text(field: &mut Field<'_>, name: &'static str) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if text.len() + chunk.len() > FROM_MAX {
            return Err(FieldError::invalid(name, format!("at most {FROM_MAX} bytes")).into());
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text).map_err(|_| FieldError::invalid(name, "must be UTF-8 text").into())
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: gateway_domain::media_limits::MEDIA_MAX_BYTES as usize + MULTIPART_OVERHEAD,
        }
    } else {
        ApiError::MalformedMultipart(error.body_text())
    }
}

/// A client's file name as Meta gets it: the last path segment, printable
/// ASCII only, at most 128 characters.
fn file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"')
        .take(128)
        .collect();
    if clean.trim().is_empty() {
        DEFAULT_FILE_NAME.to_owned()
    } else {
        clean
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MediaQuery {
    /// The sender (name or phone_number_id) that received the media.
    from: Option<String>,
}

/// `GET /media/{media_id}?from=SENDER`.
pub(crate) async fn download(
    State(state): State<AppState>,
    client: Client,
    Path(media_id): Path<String>,
    Query(query): Query<MediaQuery>,
) -> Result<Response, ApiError> {
    let media_id = valid_media_id(&media_id)?;
    let from = query.from.ok_or_else(|| FieldError::missing("from"))?;
    let sender = named_sender(&state, &client, &from)?;
    let counted = |outcome: &str| {
        state
            .metrics
            .media
            .with_label_values(&[sender.name.as_str(), "download", outcome])
            .inc();
    };
    let result = fetch(&state, &sender, media_id).await;
    counted(match &result {
        Ok(_) => "ok",
        Err(ApiError::MediaNotFound) => "not_found",
        Err(_) => "failed",
    });
    result
}

async fn fetch(
    state: &AppState,
    sender: &SenderSettings,
    media_id: &str,
) -> Result<Response, ApiError> {
    let token = token(sender)?;
    let gone_or_failed = |error: GraphError| {
        if is_media_gone(&error) {
            ApiError::MediaNotFound
        } else {
            tracing::warn!(sender = %sender.name, %error, "media download failed");
            ApiError::Graph(error)
        }
    };
    let info = state
        .graph
        .media_info(media_id, &sender.phone_number_id, token)
        .await
        .map_err(gone_or_failed)?;
    let file = state
        .graph
        .download_media(&info.url, token)
        .await
        .map_err(gone_or_failed)?;
    let content_type = file
        .headers()
        .get(CONTENT_TYPE)
        .cloned()
        .or_else(|| HeaderValue::from_str(&info.mime_type).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let length = file.content_length().or(info.file_size);
    // Errors without the URL: Meta's download URL works as a credential.
    let stream = file.bytes_stream().map_err(reqwest::Error::without_url);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(response)
}

/// A media id as Meta writes them ([`is_media_id`]).
fn valid_media_id(id: &str) -> Result<&str, FieldError> {
    if is_media_id(id) {
        Ok(id)
    } else {
        Err(FieldError::invalid(
            "media_id",
            format!("must be a media id: 1 to {MEDIA_ID_MAX} letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// `/send`'s check of media messages' `id`s, one Redis round trip for all
/// of them: an id this gateway uploaded whose 30 days are over is refused
/// (`422 media_expired` on `<type>.id`); an id it never saw goes through,
/// and Meta decides. One verdict per request, in order.
pub(crate) async fn check_media_ids(
    state: &AppState,
    requests: &[&crate::send_request::SendRequest],
    now_ms: i64,
) -> Result<Vec<Result<(), ApiError>>, ApiError> {
    let named: Vec<(usize, (&str, &str))> = requests
        .iter()
        .enumerate()
        .filter_map(|(index, request)| {
            let id = request.message.media_id()?;
            Some((index, (request.sender.phone_number_id.as_str(), id)))
        })
        .collect();
    let mut verdicts: Vec<Result<(), ApiError>> = requests.iter().map(|_| Ok(())).collect();
    if named.is_empty() {
        return Ok(verdicts);
    }
    let ids: Vec<(&str, &str)> = named.iter().map(|(_, id)| *id).collect();
    let records = state
        .queue
        .media(&ids)
        .await
        .inspect_err(|_| state.metrics.redis_failed("media"))?;
    for ((index, (_, media_id)), record) in named.into_iter().zip(records) {
        if let Some(record) = record
            && !gateway_domain::media_limits::media_id_usable(record.expires_at_ms, now_ms)
        {
            let kind = requests[index].message.kind().as_str();
            verdicts[index] = Err(FieldError::new(
                format!("{kind}.id"),
                "media_expired",
                format!(
                    "media {media_id} expired at {} (Meta keeps uploads 30 days); upload the file again",
                    crate::messages::rfc3339(record.expires_at_ms)
                ),
            )
            .into());
        }
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_odd_characters() {
        assert_eq!(file_name("photo.jpg"), "photo.jpg");
        assert_eq!(file_name("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("a\"b\r\n.png"), "ab.png");
        assert_eq!(file_name("///"), DEFAULT_FILE_NAME);
        assert_eq!(file_name(&"x".repeat(300)).len(), 128);
    }

    #[test]
    fn a_bad_media_id_names_the_path_field() {
        assert_eq!(
            valid_media_id("1037543291543636").ok(),
            Some("1037543291543636")
        );
        let error = valid_media_id("a/b").expect_err("not an id");
        assert_eq!(error.field, "media_id");
    }
}
