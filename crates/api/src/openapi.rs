//! The api's OpenAPI 3.1 document, generated from this module by `utoipa`
//! and served at `GET /openapi.json` (no auth). The copy checked in at the
//! repo root, `openapi.json`, must equal [`openapi_json`]: the contract test
//! `tests/tests/openapi_contract.rs` fails otherwise and says how to
//! regenerate it.
//!
//! Handlers build most of their JSON with `json!`, so the schemas here are
//! plain types that describe it; the operations are described on empty
//! functions, one per route and method, so the handlers stay unannotated.
//! Every path in [`crate::ROUTES`] must appear here (a unit test checks it).

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::paths;

/// The document as pretty JSON, exactly as `GET /openapi.json` answers it.
pub fn openapi_json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// `GET /openapi.json`: the document, rendered once.
pub(crate) async fn serve() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    (
        [(CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(openapi_json).as_str(),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "WhatsApp gateway",
        description = "The gateway's HTTP api: internal services send WhatsApp messages \
            through it (`/send`, `/send/batch`), follow them (`/messages`) and replay \
            failures (`/dead-letters`); Meta posts its webhooks to `/webhook`. Every \
            endpoint but `/webhook`, `/healthz`, `/readyz`, `/metrics` and \
            `/openapi.json` needs `Authorization: Bearer <client key>`, and a client \
            may use only the senders configured for it. A client sees and replays only \
            the messages it sent itself (anyone else's are answered as unknown), unless \
            it is configured `admin = true`: then every client's, on every sender."
    ),
    paths(
        operations::send,
        operations::send_batch,
        operations::find_message,
        operations::show_message,
        operations::cancel_message,
        operations::cancel_messages,
        operations::mark_read,
        operations::list_dead_letters,
        operations::replay_dead_letters,
        operations::list_suppressions,
        operations::clear_suppression,
        operations::show_window,
        operations::upload_media,
        operations::download_media,
        operations::webhook_verify,
        operations::webhook_receive,
        operations::healthz,
        operations::readyz,
        operations::metrics,
        operations::openapi,
    ),
    components(schemas(
        schemas::ErrorBody,
        schemas::ErrorDetail,
        schemas::SendBody,
        schemas::Priority,
        schemas::SendAccepted,
        schemas::AcceptedStatus,
        schemas::SendDuplicate,
        schemas::BatchBody,
        schemas::BatchAnswer,
        schemas::BatchResult,
        schemas::MessageRecord,
        schemas::MessageStatus,
        schemas::MessageError,
        schemas::HistoryEvent,
        schemas::EventSource,
        schemas::DeadLetterList,
        schemas::DeadLetter,
        crate::dead_letters::ReplayRequest,
        schemas::ReplayAnswer,
        schemas::SuppressionList,
        schemas::Suppression,
        schemas::SuppressionCleared,
        schemas::Window,
        crate::read_receipts::ReadBody,
        schemas::ReadQueued,
        schemas::MessageCancelled,
        crate::cancel::CancelBody,
        schemas::CancelCount,
        schemas::MediaForm,
        schemas::MediaUploaded,
        schemas::Health,
        schemas::Readiness,
    )),
    modifiers(&ClientKeyScheme, &OpenSendBody),
    tags(
        (name = "send", description = "Queue messages"),
        (name = "messages", description = "Follow a message"),
        (name = "dead-letters", description = "Messages that failed for good"),
        (name = "suppressions", description = "Recipients a sender will not message now"),
        (name = "windows", description = "Users' 24-hour windows"),
        (name = "media", description = "Media files to and from Meta"),
        (name = "webhook", description = "Meta's webhooks"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// The security scheme operations name in `security(("client_key" = []))`.
const CLIENT_KEY: &str = "client_key";

struct ClientKeyScheme;

impl Modify for ClientKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            CLIENT_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A client key from the gateway's configuration ([[clients]] key_env).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The `/send` body takes Meta's type-specific properties beside the
/// gateway's: `additionalProperties: true`.
struct OpenSendBody;

impl Modify for OpenSendBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schema = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("SendBody"));
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(true)));
        }
    }
}

/// One empty function per route and method: only their attributes matter.
#[allow(dead_code)]
mod operations {
    use super::paths;
    use super::schemas::*;
    use crate::dead_letters::{ListQuery, ReplayRequest};
    use crate::messages::ByWamid;
    use crate::webhook::Handshake;

    /// Queue one message
    ///
    /// The body is Meta's own message object plus the gateway's fields. It is
    /// answered `202` only once the message is stored in Redis.
    #[utoipa::path(
        post,
        path = paths::SEND,
        tag = "send",
        request_body(content = SendBody, content_type = "application/json"),
        responses(
            (status = 202, description = "Stored in Redis: `queued`, or `scheduled` with `send_after`", body = SendAccepted),
            (status = 200, description = "An idempotent repeat: the first message's id", body = SendDuplicate),
            (status = 400, description = "`malformed_json`: the body is not a JSON object", body = ErrorBody),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 409, description = "`idempotency_conflict`: the key was used for another payload", body = ErrorBody),
            (status = 413, description = "`payload_too_large`: the body is over `api.max_body_bytes`", body = ErrorBody),
            (status = 422, description = "A rule is broken; `field` is the path, e.g. `interactive.action.buttons`. A `template` or `fallback_template` is checked against the template registry of the sender's WABA (synced from Meta by the workers; not checked while it was never synced): `template_unknown` (`template.name`), `template_not_approved` (`template.name`: PAUSED, DISABLED, PENDING, REJECTED, ...), `template_language` (`template.language.code`), `template_parameters` (`template.components[i].parameters`, or `template.components` for a component that is missing); `fallback_template.*` the same", body = ErrorBody),
            (status = 429, description = "Not now, nothing was stored: `queue_full` (the sender's predicted wait, queued ahead / the rate it keeps now, is over its `max_queue_seconds` for the priority; or, with `field` `expires_at`, the message would expire in line), `client_rate_limited` or `client_daily_quota` (the client's quotas; UTC days)", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds: the predicted wait, or until the quota has room"))),
            (status = 503, description = "`unavailable`: Redis cannot take it; `sender_paused`: the sender is paused (the message says why); nothing was stored", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn send() {}

    /// Queue up to 1,000 messages
    ///
    /// Stored in one pipelined round trip; one result per item, in order.
    /// An item that breaks a rule, or that `/send` would answer 429 or 503
    /// (`queue_full`, `sender_paused`, a client quota), gets its `error`
    /// (with `retry_after`) and is not stored; the others are. When a quota
    /// covers only part of the batch, the first items go.
    #[utoipa::path(
        post,
        path = paths::SEND_BATCH,
        tag = "send",
        request_body(content = BatchBody, content_type = "application/json"),
        responses(
            (status = 200, description = "One result per item, in order", body = BatchAnswer),
            (status = 400, description = "`malformed_json`: the body is not a JSON object", body = ErrorBody),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 413, description = "`payload_too_large`: the body is over `api.max_body_bytes`", body = ErrorBody),
            (status = 422, description = "`messages` is missing, not an array, empty or too long", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis cannot take them; nothing was stored", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn send_batch() {}

    /// Find a message by Meta's id
    ///
    /// Only a message the client sent itself (an admin client: any).
    #[utoipa::path(
        get,
        path = paths::MESSAGES,
        tag = "messages",
        params(ByWamid),
        responses(
            (status = 200, description = "The message, one the client sent", body = MessageRecord),
            (status = 400, description = "`wamid` is missing", body = String, content_type = "text/plain"),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 404, description = "`not_found`: unknown, or another client's", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn find_message() {}

    /// A message's state and history
    ///
    /// Only a message the client sent itself (an admin client: any).
    #[utoipa::path(
        get,
        path = paths::MESSAGE,
        tag = "messages",
        params(("id" = String, Path, description = "The id `/send` answered")),
        responses(
            (status = 200, description = "The message", body = MessageRecord),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 404, description = "`not_found`: unknown, or another client's (the same answer)", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn show_message() {}

    /// Cancel a message not sent yet
    ///
    /// A message that is queued, scheduled, held or waiting for its next
    /// attempt ends `cancelled` and is never sent; its status event
    /// (`"status": "cancelled"`) goes to its `callback_url` and the status
    /// subscribers. A message being sent, or past that, stays as it is: 409
    /// with its state in `error.status`. A cancel racing a worker's send
    /// ends exactly one way. Cancelling twice answers 200 both times.
    #[utoipa::path(
        delete,
        path = paths::MESSAGE,
        tag = "messages",
        params(("id" = String, Path, description = "The id `/send` answered")),
        responses(
            (status = 200, description = "Cancelled (now or before)", body = MessageCancelled),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 404, description = "`not_found`: unknown, or another client's (the same answer)", body = ErrorBody),
            (status = 409, description = "`not_cancellable`: being sent or past it; `error.status` says which state (`sending`, `sent`, `delivered`, `read`, `failed`, `expired`)", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn cancel_message() {}

    /// Cancel a campaign: every waiting message whose metadata matches
    ///
    /// Cancels each message the client sent through the sender, accepted
    /// before this request, that is not sent yet and whose `metadata` has
    /// every value named here (an admin client: any client's). Messages
    /// being sent at that moment are waited for (at most the Graph API
    /// timeout), so nothing matching is sent after the answer. Each
    /// cancelled message gets its status event, as with `DELETE
    /// /messages/{id}`.
    #[utoipa::path(
        post,
        path = paths::MESSAGES_CANCEL,
        tag = "messages",
        request_body(content = crate::cancel::CancelBody, content_type = "application/json"),
        responses(
            (status = 200, description = "How many were cancelled, and how many were sent first", body = CancelCount),
            (status = 400, description = "`malformed_json`: not JSON, or not of this shape", body = ErrorBody),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 422, description = "`metadata` missing, empty, over 16 values or not scalars; `unknown_sender`, or `from` missing", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn cancel_messages() {}

    /// The client's dead letters
    ///
    /// Messages the client sent that failed for good, oldest first, sender
    /// by sender. An admin client sees every client's, on every sender.
    #[utoipa::path(
        get,
        path = paths::DEAD_LETTERS,
        tag = "dead-letters",
        params(ListQuery),
        responses(
            (status = 200, description = "The matching dead letters", body = DeadLetterList),
            (status = 400, description = "A query parameter is not of its type", body = String, content_type = "text/plain"),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use (never for an admin)", body = ErrorBody),
            (status = 422, description = "`unknown_sender`", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn list_dead_letters() {}

    /// Queue dead letters again
    ///
    /// The matching dead letters the client sent (an admin client: any
    /// client's) are queued again under their own ids. Another client's
    /// letters are neither replayed nor counted.
    #[utoipa::path(
        post,
        path = paths::DEAD_LETTERS_REPLAY,
        tag = "dead-letters",
        request_body(content = ReplayRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "How many were queued again", body = ReplayAnswer),
            (status = 400, description = "`malformed_json`: not JSON, or not of this shape", body = ErrorBody),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use (never for an admin)", body = ErrorBody),
            (status = 422, description = "`unknown_sender`", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn replay_dead_letters() {}

    /// List a sender's suppressions
    ///
    /// Recipients the sender will not message now: opted out of marketing
    /// (131050, or an opt-out keyword; until they write again or opt in),
    /// marketing-capped (131049; 24 h), not on WhatsApp (131026; for
    /// `suppressions.not_on_whatsapp_seconds`). A message to them fails
    /// with reason `suppressed` and the code, without a call to Meta.
    /// Paged: pass `next_cursor` back until it is 0.
    #[utoipa::path(
        get,
        path = paths::SUPPRESSIONS,
        tag = "suppressions",
        params(crate::suppressions::ListQuery),
        responses(
            (status = 200, description = "A page of suppressions", body = SuppressionList),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 422, description = "`unknown_sender`, or `from` missing for a client of several senders", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn list_suppressions() {}

    /// Clear a recipient's suppressions
    #[utoipa::path(
        delete,
        path = paths::SUPPRESSION,
        tag = "suppressions",
        params(("recipient" = String, Path, description = "Phone number or business-scoped user id"),
            crate::suppressions::ClearQuery),
        responses(
            (status = 200, description = "Cleared", body = SuppressionCleared),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 404, description = "`not_found`: the recipient has no such suppression", body = ErrorBody),
            (status = 422, description = "A bad recipient or scope, `unknown_sender`, or `from` missing", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn clear_suppression() {}

    /// Mark an inbound message read
    ///
    /// For services that talk to users: marks the inbound message read
    /// (blue ticks), and with `typing_indicator` shows "typing..." until
    /// the sender's next message or 25 s. It does not wait behind the
    /// sender's backlog: the sender's worker sends it within its rate,
    /// before any queued message, usually within milliseconds. Nothing is
    /// recorded in the message records; `gateway_read_receipts_total`
    /// counts the outcomes. A receipt taken by a worker that dies before
    /// sending it is lost.
    #[utoipa::path(
        post,
        path = paths::MESSAGES_READ,
        tag = "messages",
        request_body(content = crate::read_receipts::ReadBody, content_type = "application/json"),
        responses(
            (status = 202, description = "Waiting for the sender's worker", body = ReadQueued),
            (status = 400, description = "`malformed_json`: not JSON, or not of this shape", body = ErrorBody),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 404, description = "`not_found`: the sender received no inbound message with this id (in the last 7 days)", body = ErrorBody),
            (status = 422, description = "A bad `message_id` or `typing_indicator`, `unknown_sender`, or `from` missing", body = ErrorBody),
            (status = 429, description = "`too_many_waiting`: 1,000 receipts wait for the sender (no worker drains them)", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn mark_read() {}

    /// A recipient's 24-hour window
    ///
    /// Whether the window is open as far as the gateway knows (from the
    /// user's inbound messages on the webhook), and until when: a service
    /// can then choose a free-form message or a template itself.
    #[utoipa::path(
        get,
        path = paths::WINDOW,
        tag = "windows",
        params(("recipient" = String, Path, description = "Phone number or business-scoped user id"),
            crate::windows::WindowQuery),
        responses(
            (status = 200, description = "The window", body = Window),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 422, description = "A bad recipient, `unknown_sender`", body = ErrorBody),
            (status = 503, description = "`unavailable`: Redis did not answer", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        ),
        security(("client_key" = []))
    )]
    fn show_window() {}

    /// Upload a media file
    ///
    /// `multipart/form-data` with `from` (a sender the client may send
    /// from), then `file` with its `Content-Type`, in that order. Meta's
    /// types and limits are checked before and while the file streams to
    /// Meta (it is never held whole): image jpeg/png 5 MB; audio aac, amr,
    /// mpeg, mp4, ogg 16 MB; video mp4/3gpp 16 MB; documents (text, pdf,
    /// Office) 100 MB; sticker webp 500 KB (a MB is 1,048,576 bytes). The
    /// id works in `/send` (`{"type": "image", "image": {"id": ...}}`)
    /// until `expires_at`, 30 days, after which `/send` refuses it with
    /// `422 media_expired`. `gateway_media_total` counts the outcomes.
    #[utoipa::path(
        post,
        path = paths::MEDIA,
        tag = "media",
        request_body(content = MediaForm, content_type = "multipart/form-data"),
        responses(
            (status = 201, description = "Meta has the file", body = MediaUploaded),
            (status = 400, description = "`malformed_multipart`: not multipart/form-data, or it broke off", body = ErrorBody),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 413, description = "`media_too_large` (field `file`): over the limit of its type, named in the message; `payload_too_large`: the form is over 100 MB", body = ErrorBody),
            (status = 422, description = "`unsupported_media_type` (field `file`): a type Meta does not take (the message lists those it does); `missing_field` for `from` or `file`, `empty_file`, `unknown_sender`, `unknown_field`", body = ErrorBody),
            (status = 502, description = "`graph_error`: Meta refused the upload or did not answer", body = ErrorBody),
            (status = 504, description = "`graph_error`: Meta did not answer in time", body = ErrorBody),
        ),
        security(("client_key" = []))
    )]
    fn upload_media() {}

    /// Download a media file
    ///
    /// An inbound message's file (its `id` from the webhook, as forwarded
    /// to services), streamed from Meta with its `Content-Type` and
    /// `Content-Length`. Meta's download URL and the sender's token stay
    /// in the gateway.
    #[utoipa::path(
        get,
        path = paths::MEDIA_FILE,
        tag = "media",
        params(("media_id" = String, Path, description = "Meta's media id"),
            crate::media::MediaQuery),
        responses(
            (status = 200, description = "The file", content_type = "application/octet-stream",
                headers(("Content-Type" = String, description = "The file's MIME type"),
                    ("Content-Length" = u64, description = "The file's size"))),
            (status = 401, description = "`unauthorized`: no or unknown client key", body = ErrorBody),
            (status = 403, description = "`forbidden`: a sender the client may not use", body = ErrorBody),
            (status = 404, description = "`media_not_found`: Meta does not have it for this sender (never, deleted, or expired)", body = ErrorBody),
            (status = 422, description = "A bad `media_id`, `from` missing, `unknown_sender`", body = ErrorBody),
            (status = 502, description = "`graph_error`: Meta failed the call", body = ErrorBody),
            (status = 504, description = "`graph_error`: Meta did not answer in time", body = ErrorBody),
        ),
        security(("client_key" = []))
    )]
    fn download_media() {}

    /// Meta's verification handshake
    #[utoipa::path(
        get,
        path = paths::WEBHOOK,
        tag = "webhook",
        params(Handshake),
        responses(
            (status = 200, description = "The raw `hub.challenge`", body = String, content_type = "text/plain"),
            (status = 403, description = "`forbidden`: wrong mode or verify token", body = ErrorBody),
        )
    )]
    fn webhook_verify() {}

    /// A signed event from Meta
    ///
    /// Checked against every configured app secret, stored in the events
    /// stream and answered at once; workers process it behind the answer.
    #[utoipa::path(
        post,
        path = paths::WEBHOOK,
        tag = "webhook",
        params(("X-Hub-Signature-256" = String, Header,
            description = "`sha256=<hex HMAC-SHA256 of the raw body with the app secret>`")),
        request_body(content = Object, content_type = "application/json",
            description = "Meta's webhook payload (`object`, `entry[].changes[].value`)"),
        responses(
            (status = 200, description = "Stored; or stored nowhere and ignored: a webhook of another of Meta's products (`object` other than `whatsapp_business_account`), or one only about phone numbers this gateway does not serve"),
            (status = 400, description = "`malformed_json`: signed, but not JSON, or not shaped like a WhatsApp webhook", body = ErrorBody),
            (status = 401, description = "`invalid_signature`: missing, malformed or wrong signature; nothing stored", body = ErrorBody),
            (status = 413, description = "`payload_too_large`: over `webhook.max_body_bytes`", body = ErrorBody),
            (status = 503, description = "`unavailable` (Redis cannot take it; Meta retries), `backlog_full` (the events stream holds `webhook.max_backlog` entries; nothing stored, Meta retries) or `webhook_not_configured` (no app secret)", body = ErrorBody,
                headers(("Retry-After" = u32, description = "Seconds to wait before retrying (with `unavailable` and `backlog_full`)"))),
        )
    )]
    fn webhook_receive() {}

    /// Liveness: the process runs
    #[utoipa::path(
        get,
        path = paths::HEALTHZ,
        tag = "operations",
        responses((status = 200, description = "Always", body = Health))
    )]
    fn healthz() {}

    /// Readiness: Redis answers
    #[utoipa::path(
        get,
        path = paths::READYZ,
        tag = "operations",
        responses(
            (status = 200, description = "Redis answers", body = Readiness),
            (status = 503, description = "Redis does not answer", body = Readiness),
        )
    )]
    fn readyz() {}

    /// Prometheus metrics
    ///
    /// On `api.listen`, or only on `api.metrics_listen` when that is set
    /// (then `api.listen` answers `404`).
    #[utoipa::path(
        get,
        path = paths::METRICS,
        tag = "operations",
        responses(
            (status = 200, description = "Prometheus text exposition format",
                body = String, content_type = "text/plain; version=0.0.4"),
            (status = 404, description = "`api.metrics_listen` is set: `/metrics` is served there"),
        )
    )]
    fn metrics() {}

    /// This document
    #[utoipa::path(
        get,
        path = paths::OPENAPI,
        tag = "operations",
        responses((status = 200, description = "The OpenAPI 3.1 document of this api",
            body = Object, content_type = "application/json"))
    )]
    fn openapi() {}
}

/// The JSON the handlers answer and take, described. The handlers build
/// most of it with `json!`; these types exist for the document only.
#[allow(dead_code)]
mod schemas {
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;

    /// Every error answer.
    #[derive(Serialize, ToSchema)]
    pub struct ErrorBody {
        pub error: ErrorDetail,
    }

    /// What went wrong; also each failed item of a batch.
    #[derive(Serialize, ToSchema)]
    pub struct ErrorDetail {
        /// Stable and machine-readable, e.g. `malformed_json`, `too_short`,
        /// `unknown_sender`, `idempotency_conflict`, `queue_full`,
        /// `client_rate_limited`, `sender_paused`, `unavailable`.
        #[schema(example = "too_long")]
        pub code: String,
        /// For people.
        pub message: String,
        /// The path of the field at fault, when there is one, e.g.
        /// `interactive.action.buttons` or `messages[1].text.body`.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, example = "text.body")]
        pub field: Option<String>,
        /// Seconds to wait before trying again, where waiting helps (the
        /// same as the `Retry-After` header; in a batch, per item).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, example = 6)]
        pub retry_after: Option<u64>,
        /// For `not_cancellable`: the state the message stays in.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, example = "sent")]
        pub status: Option<String>,
    }

    /// `transactional` goes first; a sender sends `bulk` only when no
    /// transactional message is ready.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Priority {
        Transactional,
        Bulk,
    }

    /// Meta's message object (`type` plus the object of that type: `text`,
    /// `template`, `image`, `document`, `audio`, `video`, `sticker`,
    /// `interactive`, `location`, `contacts`, `reaction`; optional
    /// `context`), as in Meta's documentation, plus the gateway's fields.
    /// The other properties (`text`, `template`, `interactive`, ...,
    /// `context`, `messaging_product`: `whatsapp`, `recipient_type`:
    /// `individual`) are Meta's and checked against Meta's limits, but not
    /// described here.
    #[derive(Serialize, ToSchema)]
    #[schema(example = json!({
        "from": "support", "to": "+16505551234", "type": "text",
        "text": {"body": "Your code is 123456"},
        "idempotency_key": "otp-42", "metadata": {"order": 1234}
    }))]
    pub struct SendBody {
        /// A configured sender's name or phone_number_id.
        pub from: String,
        /// The recipient's phone number (`+`, spaces, dashes and parentheses
        /// accepted, stored as E.164) or business-scoped user id; give `to`
        /// or `recipient`.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub to: Option<String>,
        /// The same as `to`.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub recipient: Option<String>,
        /// Meta's message type; the object of that name holds the content.
        #[serde(rename = "type")]
        #[schema(example = "text")]
        pub kind: String,
        /// A template object sent instead when the recipient's 24-hour
        /// window is closed (else the sender's configured default); checked
        /// against the WABA's template registry like `template`. When every
        /// fallback is unusable (paused, disabled, missing) the message fails
        /// `no_usable_fallback` without a call to Meta.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, value_type = Object)]
        pub fallback_template: Option<Value>,
        /// The same key from the same client for the same sender within
        /// 24 h returns the first id (`200`); with another payload, `409`.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, min_length = 1, max_length = 256)]
        pub idempotency_key: Option<String>,
        /// Kept with the message and echoed in its status events; at most
        /// 4 KiB as JSON.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, value_type = Object)]
        pub metadata: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub priority: Option<Priority>,
        /// Not sent before this time (at most 30 days ahead); `scheduled`
        /// until then.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, format = DateTime)]
        pub send_after: Option<String>,
        /// Never sent after this time; the message then ends `expired`.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, format = DateTime)]
        pub expires_at: Option<String>,
        /// An `https` URL the message's status events are POSTed to,
        /// signed with the client's key (`http` only where the gateway's
        /// `callbacks.require_https` is off). Refused with `422` (`field`
        /// `callback_url`): `callback_not_https`; `callback_userinfo` (a
        /// user name or password in it); `callback_host_not_allowed` (a
        /// host outside the client's `callback_hosts`);
        /// `callback_private_address` (unless
        /// `callbacks.allow_private_addresses`: `localhost`, or an IP
        /// address in a loopback, private, link-local, metadata or other
        /// special range); `invalid_value` (not an absolute http(s) URL). A
        /// name is resolved at each delivery and only addresses outside
        /// those ranges are connected to; a name that leads only to them is
        /// not called (the event is given up on). Redirects are not
        /// followed.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, max_length = 2048)]
        pub callback_url: Option<String>,
    }

    /// `202`: stored.
    #[derive(Serialize, ToSchema)]
    pub struct SendAccepted {
        #[schema(example = "106540352242922-1764000000000-0")]
        pub id: String,
        pub status: AcceptedStatus,
    }

    /// `scheduled` when `send_after` is in the future, else `queued`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum AcceptedStatus {
        Queued,
        Scheduled,
    }

    /// `200`: an idempotent repeat.
    #[derive(Serialize, ToSchema)]
    pub struct SendDuplicate {
        /// The first message's id.
        pub id: String,
        pub duplicate: bool,
    }

    #[derive(Serialize, ToSchema)]
    pub struct BatchBody {
        /// `/send` bodies.
        #[schema(min_items = 1, max_items = 1000)]
        pub messages: Vec<SendBody>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct BatchAnswer {
        /// One per item, in order.
        pub results: Vec<BatchResult>,
    }

    /// One item's outcome: stored, an idempotent repeat, or refused.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum BatchResult {
        Stored {
            index: usize,
            id: String,
            status: AcceptedStatus,
        },
        Duplicate {
            index: usize,
            id: String,
            duplicate: bool,
        },
        Refused {
            index: usize,
            error: ErrorDetail,
        },
    }

    /// A message's life so far.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum MessageStatus {
        Queued,
        Scheduled,
        Sending,
        Retrying,
        /// Kept back by the portfolio's messaging limit; sent when the
        /// moving 24 h frees room.
        Held,
        Sent,
        Delivered,
        Read,
        Failed,
        Expired,
        Cancelled,
    }

    /// A message's current state and history.
    #[derive(Serialize, ToSchema)]
    pub struct MessageRecord {
        pub id: String,
        pub status: MessageStatus,
        /// The sender's name.
        pub from: String,
        /// The recipient: E.164 number or business-scoped user id.
        pub to: String,
        /// Meta's message type.
        #[serde(rename = "type")]
        pub kind: String,
        pub attempts: u32,
        /// Whether the fallback template went instead of the message.
        pub fallback_used: bool,
        #[schema(format = DateTime)]
        pub created_at: String,
        #[schema(format = DateTime)]
        pub updated_at: String,
        /// In order, each event once.
        pub history: Vec<HistoryEvent>,
        /// Meta's id, once Meta accepted the message.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub wamid: Option<String>,
        /// The last failure.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub error: Option<MessageError>,
        /// The caller's metadata.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, value_type = Object)]
        pub metadata: Option<Value>,
    }

    /// Meta's error code and title (code `0` for the gateway's own reasons).
    #[derive(Serialize, ToSchema)]
    pub struct MessageError {
        #[schema(example = 131026)]
        pub code: i64,
        pub title: Option<String>,
    }

    /// One step: the gateway's own, or a status event from Meta
    /// (`"source": "meta"`, with Meta's time).
    #[derive(Serialize, ToSchema)]
    pub struct HistoryEvent {
        pub status: MessageStatus,
        #[schema(format = DateTime)]
        pub at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub source: Option<EventSource>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub wamid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub error_code: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub error_title: Option<String>,
        /// A retry's next attempt, in Unix milliseconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub next_attempt_ms: Option<i64>,
        /// A scheduled message's due time, in Unix milliseconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub send_after_ms: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false, example = "replayed from the dead letters")]
        pub detail: Option<String>,
    }

    /// Set on Meta's status events.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum EventSource {
        Meta,
    }

    #[derive(Serialize, ToSchema)]
    pub struct DeadLetterList {
        pub dead_letters: Vec<DeadLetter>,
    }

    /// A message that failed for good.
    #[derive(Serialize, ToSchema)]
    pub struct DeadLetter {
        /// Where it sits in the sender's dead-letter stream.
        pub entry_id: String,
        /// The message's id.
        pub id: String,
        /// The sender's name.
        pub sender: String,
        /// The client that sent it.
        pub client: String,
        pub recipient: String,
        /// Meta's message type.
        #[serde(rename = "type")]
        pub kind: String,
        /// Meta's error code (`0` for the gateway's own reasons).
        pub code: i64,
        pub title: String,
        pub reason: String,
        pub attempts: u32,
        /// When it failed, in Unix milliseconds.
        pub failed_ms: i64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ReplayAnswer {
        /// How many dead letters were queued again.
        pub replayed: u64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct SuppressionList {
        pub suppressions: Vec<Suppression>,
        /// Pass back as `cursor` for the next page; 0 when there is none.
        pub next_cursor: u64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct Suppression {
        #[schema(example = "+16505551234")]
        pub recipient: String,
        /// `marketing` (marketing templates only) or `all`.
        pub scope: String,
        /// Meta's code: 131050 (opted out; also for a keyword), 131049
        /// (marketing cap), 131026 (not on WhatsApp).
        pub code: i64,
        /// `meta`, `keyword` or `operator`.
        pub source: String,
        pub at_ms: i64,
        /// Until when (Unix ms); absent: until cleared.
        pub until_ms: Option<i64>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct Window {
        #[schema(example = "+16505551234")]
        pub recipient: String,
        pub open: bool,
        /// When it closes (RFC 3339), while open.
        pub until: Option<String>,
    }

    /// The form of `POST /media`.
    #[derive(Serialize, ToSchema)]
    pub struct MediaForm {
        /// The sender (name or phone_number_id); before `file`.
        #[schema(example = "support")]
        pub from: String,
        /// The file, with its `Content-Type` (e.g. `image/jpeg`).
        #[schema(value_type = String, format = Binary)]
        pub file: Vec<u8>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct MediaUploaded {
        /// Meta's media id, for `/send` (`image.id`, `document.id`, ...).
        #[schema(example = "1037543291543636")]
        pub id: String,
        /// When Meta forgets it (RFC 3339), 30 days after the upload.
        pub expires_at: String,
        pub mime_type: String,
        /// The file's size.
        pub bytes: u64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct MessageCancelled {
        #[schema(example = "106540352242922-1764000000000-0")]
        pub id: String,
        /// Always `cancelled`.
        #[schema(example = "cancelled")]
        pub status: String,
    }

    #[derive(Serialize, ToSchema)]
    pub struct CancelCount {
        /// Messages cancelled by this request.
        pub cancelled: u64,
        /// Matching messages Meta had accepted before the cancel reached
        /// them (or, rarely, still being sent when it stopped waiting).
        pub sent_meanwhile: u64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ReadQueued {
        #[schema(example = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdGRkQ5")]
        pub message_id: String,
        /// Always `queued`.
        #[schema(example = "queued")]
        pub status: String,
        /// Whether the typing indicator goes too.
        pub typing: bool,
    }

    #[derive(Serialize, ToSchema)]
    pub struct SuppressionCleared {
        pub recipient: String,
        pub cleared: u64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct Health {
        #[schema(example = "ok")]
        pub status: String,
    }

    #[derive(Serialize, ToSchema)]
    pub struct Readiness {
        /// `ready` or `not_ready`.
        #[schema(example = "ready")]
        pub status: String,
        /// `ok` or `unreachable`.
        #[schema(example = "ok")]
        pub redis: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented statuses are a copy of the domain's: they must not drift.
    #[test]
    fn the_documented_statuses_are_the_domains() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi_json()).expect("the document is JSON");
        let documented: Vec<&str> = document["components"]["schemas"]["MessageStatus"]["enum"]
            .as_array()
            .expect("MessageStatus is a string enum")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let domain: Vec<&str> = gateway_domain::MessageStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(documented, domain);
    }

    #[test]
    fn every_route_is_described() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi_json()).expect("the document is JSON");
        let described = document["paths"].as_object().expect("paths");
        for route in crate::ROUTES {
            assert!(
                described.contains_key(route),
                "{route} is served but not in the OpenAPI document (crates/api/src/openapi.rs)"
            );
        }
        for path in described.keys() {
            assert!(
                crate::ROUTES.contains(&path.as_str()),
                "{path} is in the OpenAPI document but not in ROUTES"
            );
        }
        assert_eq!(document["openapi"], "3.1.0");
    }

    #[tokio::test]
    async fn the_route_answers_the_document() {
        let response = serve().await.into_response();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body");
        assert_eq!(body, openapi_json().as_bytes());
    }
}
