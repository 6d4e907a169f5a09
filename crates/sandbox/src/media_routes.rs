//! Meta's media routes over HTTP: `POST /{version}/{phone_number_id}/media`
//! (multipart: `messaging_product=whatsapp`, `type`, `file`) answers `{"id"}`;
//! `GET /{version}/{media_id}` (optionally `?phone_number_id=`) answers the
//! metadata with a download `url` on this sandbox's own host
//! ([`DOWNLOAD_PATH`]), which needs the owner's bearer token and expires;
//! `DELETE /{version}/{media_id}` answers `{"success": true}`. The second
//! path segment is shared with the phone-number node (`account_routes`),
//! which hands a media id here.
//!
//! An upload is checked in Meta's order: token (190), number (100), the
//! file's type (100, naming the types Meta takes), its size for that type
//! (131053, read no further than the limit), `messaging_product` (100) and
//! a missing file (100). An upload whose body breaks off stores nothing.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;

use crate::engine::Engine;
use crate::errors::MetaError;
use crate::ids::fbtrace_id;
use crate::media::{DOWNLOAD_PATH, SUPPORTED_TYPES, limit};
use crate::stats::Event;

/// The longest text field read (`messaging_product`, `type`).
const TEXT_FIELD_MAX: usize = 256;

pub(crate) fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route(
            "/{version}/{phone_number_id}/media",
            // The type's limit is applied as the file is read.
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route(DOWNLOAD_PATH, get(download))
}

fn reject(engine: &Engine, error: &MetaError) -> Response {
    engine.count(Event::Rejected(error.code));
    error.response(&fbtrace_id(&engine.random))
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// An upload read whole, or why not.
enum Refused {
    Meta(MetaError),
    /// The body broke off (the client went away): nobody reads an answer.
    BrokenOff,
}

struct Upload {
    mime_type: String,
    bytes: Bytes,
}

async fn upload(
    State(engine): State<Arc<Engine>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if let Err(error) = engine.authorize_media_upload(&phone_number_id, authorization(&headers)) {
        return reject(&engine, &error);
    }
    let Ok(multipart) = multipart else {
        return reject(
            &engine,
            &MetaError::invalid_parameter("The request must be multipart/form-data"),
        );
    };
    match read_upload(multipart).await {
        Ok(upload) => {
            let media = engine.media.store(
                &phone_number_id,
                &upload.mime_type,
                upload.bytes,
                &engine.random,
            );
            engine.count(Event::MediaUploaded);
            Json(json!({ "id": media.id })).into_response()
        }
        Err(Refused::Meta(error)) => reject(&engine, &error),
        Err(Refused::BrokenOff) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, Refused> {
    let mut product = None;
    let mut declared: Option<String> = None;
    let mut file = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|_| Refused::BrokenOff)?
    {
        match field.name() {
            Some("messaging_product") => product = Some(small_text(&mut field).await?),
            Some("type") => declared = Some(small_text(&mut field).await?),
            Some("file") => {
                let mime_type = declared
                    .clone()
                    .or_else(|| field.content_type().map(str::to_owned))
                    .unwrap_or_default();
                file = Some(read_file(&mut field, mime_type).await?);
            }
            _ => {}
        }
    }
    if product.as_deref() != Some("whatsapp") {
        return Err(Refused::Meta(MetaError::invalid_parameter(
            "The parameter messaging_product is required and must be whatsapp.",
        )));
    }
    file.ok_or_else(|| {
        Refused::Meta(MetaError::invalid_parameter(
            "The parameter file is required.",
        ))
    })
}

async fn small_text(field: &mut Field<'_>) -> Result<String, Refused> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| Refused::BrokenOff)? {
        if text.len() + chunk.len() > TEXT_FIELD_MAX {
            return Err(Refused::Meta(MetaError::invalid_parameter(
                "A text parameter is too long",
            )));
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text)
        .map_err(|_| Refused::Meta(MetaError::invalid_parameter("A parameter is not UTF-8")))
}

async fn read_file(field: &mut Field<'_>, mime_type: String) -> Result<Upload, Refused> {
    let Some((_, max)) = limit(&mime_type) else {
        return Err(Refused::Meta(MetaError::invalid_parameter(format!(
            "Param file must be a file with one of the following types: {SUPPORTED_TYPES}. \
             Received file of type '{mime_type}'."
        ))));
    };
    let mut bytes = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| Refused::BrokenOff)? {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(Refused::Meta(MetaError::media_upload(format!(
                "The file is larger than {max} bytes, the limit for {mime_type}"
            ))));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Upload {
        mime_type,
        bytes: bytes.freeze(),
    })
}

#[derive(Deserialize)]
pub(crate) struct MediaQuery {
    phone_number_id: Option<String>,
}

/// `GET /{version}/{media_id}`: the metadata, with a fresh download URL.
pub(crate) fn info(
    engine: &Engine,
    media_id: &str,
    phone_number_id: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let media = match engine.owned_media(media_id, phone_number_id, authorization(headers)) {
        Ok(media) => media,
        Err(error) => return reject(engine, &error),
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let query = engine.media.link(&media.id, &engine.random);
    Json(json!({
        "messaging_product": "whatsapp",
        "url": format!("http://{host}{DOWNLOAD_PATH}?{query}"),
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": media.bytes.len(),
        "id": media.id,
    }))
    .into_response()
}

/// `DELETE /{version}/{media_id}`.
pub(crate) async fn delete(
    State(engine): State<Arc<Engine>>,
    Path((_version, media_id)): Path<(String, String)>,
    Query(query): Query<MediaQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = engine.owned_media(
        &media_id,
        query.phone_number_id.as_deref(),
        authorization(&headers),
    ) {
        return reject(&engine, &error);
    }
    engine.media.delete(&media_id);
    Json(json!({ "success": true })).into_response()
}

#[derive(Deserialize)]
struct LinkQuery {
    mid: Option<String>,
    hash: Option<String>,
}

/// The download URL: the file with the owner's token while the link
/// lives; 404 once it expired or the file is gone, 401 without the token.
async fn download(
    State(engine): State<Arc<Engine>>,
    Query(query): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let (Some(mid), Some(hash)) = (query.mid, query.hash) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(media) = engine.media.follow(&mid, &hash) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if engine
        .owned_media(&mid, None, authorization(&headers))
        .is_err()
    {
        return MetaError::invalid_token().response(&fbtrace_id(&engine.random));
    }
    engine.count(Event::MediaDownloaded);
    let content_type = HeaderValue::from_str(&media.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(CONTENT_TYPE, content_type)], media.bytes).into_response()
}
