//! Media through the gateway: `POST /media` streams a file to Meta (the
//! sandbox) with the sender's token, in bounded memory, after checking
//! Meta's type and size limits; the id it answers sends an image, until
//! its 30 days are over; an inbound image is forwarded with the api path
//! that streams it back byte for byte (`GET /media/{id}?from=`), which
//! answers 404 once Meta forgot it. Only a client
//! allowed the sender may do either.

use std::net::SocketAddr;
use std::time::Duration;

use gateway_tests::{
    GatewayOptions, KEY_ALL, KEY_ONE, SignedReceiver, TestGateway, phone_number_id, wait_until,
};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MB: usize = 1024 * 1024;
const USER: &str = "+16505551234";
const SERVICE_SECRET: &str = "bot-secret";

/// `len` bytes that look like a JPEG and do not compress.
fn jpeg(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn form(from: Option<&str>, file: Option<(Vec<u8>, &str)>) -> Form {
    let mut form = Form::new();
    if let Some(from) = from {
        form = form.text("from", from.to_owned());
    }
    if let Some((bytes, mime)) = file {
        let part = Part::bytes(bytes)
            .file_name("upload.bin")
            .mime_str(mime)
            .expect("a MIME type");
        form = form.part("file", part);
    }
    form
}

async fn upload(api_url: &str, key: Option<&str>, form: Form) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{api_url}/media"))
        .multipart(form);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("the api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The peak resident memory of a process (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

fn free_address() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("addr")
}

/// Opens the user's window with `s0` (the image may go as itself, not as
/// the fallback template) and waits until the gateway knows.
async fn open_window(gateway: &TestGateway) {
    gateway
        .sandbox
        .inbound(&phone_number_id(0), USER, "hi")
        .expect("inbound");
    wait_until("the window to open", Duration::from_secs(10), || async {
        let (status, window) = gateway
            .get(&format!("/windows/{USER}"), &[("from", "s0")])
            .await;
        (status == 200 && window["open"] == true).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mb_jpeg_streams_through_in_bounded_memory_and_sends_as_an_image() {
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        ..Default::default()
    })
    .await;
    // The api as a process of its own, to measure its memory alone.
    let listen = free_address();
    let api = gateway.spawn_api(env!("CARGO_BIN_EXE_gateway-under-test"), listen);
    let api_url = format!("http://{listen}");
    let http = reqwest::Client::new();
    wait_until(
        "the api process to answer",
        Duration::from_secs(20),
        || async {
            let ready = http.get(format!("{api_url}/healthz")).send().await.ok()?;
            ready.status().is_success().then_some(())
        },
    )
    .await;
    let pid = api.pid().expect("the api runs");

    // A first, small upload warms up every path (connections, buffers).
    let (status, small) = upload(
        &api_url,
        Some(KEY_ALL),
        form(Some("s0"), Some((jpeg(64 * 1024), "image/jpeg"))),
    )
    .await;
    assert_eq!(status, 201, "{small}");
    let baseline = peak_memory(pid);

    let file = jpeg(5 * MB - 1);
    let (status, uploaded) = upload(
        &api_url,
        Some(KEY_ALL),
        form(Some("s0"), Some((file.clone(), "image/jpeg"))),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let growth = peak_memory(pid).saturating_sub(baseline);
    assert!(
        growth < 3 * MB as u64,
        "the api's peak memory grew by {growth} bytes for a {} byte file",
        file.len()
    );
    let id = uploaded["id"].as_str().expect("a media id").to_owned();
    assert_eq!(uploaded["bytes"], file.len());
    assert_eq!(uploaded["mime_type"], "image/jpeg");
    let expires_at = uploaded["expires_at"].as_str().expect("expires_at");
    let expires =
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days), "expires in {days} days");

    // Meta (the sandbox) has the very file.
    let stored = gateway.sandbox.media(&id).expect("the sandbox stored it");
    assert_eq!(stored.file_size, file.len() as u64);
    assert_eq!(stored.mime_type, "image/jpeg");
    assert_eq!(stored.phone_number_id, phone_number_id(0));
    assert_eq!(gateway.sandbox.stats().media_uploads, 2);

    // The id sends an image.
    open_window(&gateway).await;
    let (status, queued) = gateway
        .send(&json!({"from": "s0", "to": USER, "type": "image", "image": {"id": id, "caption": "the receipt"}}))
        .await;
    assert_eq!(status, 202, "{queued}");
    let message = queued["id"].as_str().expect("message id");
    let record = gateway
        .wait_for_status(message, "sent", Duration::from_secs(10))
        .await;
    assert_eq!(record["fallback_used"], false, "{record}");
    let sent = gateway
        .sandbox
        .accepted()
        .into_iter()
        .find_map(|m| (m.message_type == "image").then_some(m.body))
        .expect("the sandbox accepted the image");
    assert_eq!(sent["image"]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_over_the_limit_or_of_other_types_never_reach_meta() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let api = gateway.api_url.as_str();

    let (status, refused) = upload(
        api,
        Some(KEY_ALL),
        form(Some("s0"), Some((jpeg(5 * MB + 1), "image/jpeg"))),
    )
    .await;
    assert_eq!(status, 413, "{refused}");
    assert_eq!(refused["error"]["code"], "media_too_large", "{refused}");
    assert_eq!(refused["error"]["field"], "file");
    assert_eq!(refused["error"]["message"], "image/jpeg is at most 5 MB");

    for mime in ["image/gif", "application/x-msdownload"] {
        let (status, refused) = upload(
            api,
            Some(KEY_ALL),
            form(Some("s0"), Some((vec![0x47; 1024], mime))),
        )
        .await;
        assert_eq!(status, 422, "{mime}: {refused}");
        assert_eq!(refused["error"]["code"], "unsupported_media_type");
        assert_eq!(refused["error"]["field"], "file");
        let message = refused["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(mime) && message.contains("image/jpeg"),
            "{message}"
        );
    }

    // The form needs both fields, `from` first.
    let (status, refused) = upload(
        api,
        Some(KEY_ALL),
        form(None, Some((jpeg(1024), "image/jpeg"))),
    )
    .await;
    assert_eq!((status, &refused["error"]["field"]), (422, &json!("from")));
    let (status, refused) = upload(api, Some(KEY_ALL), form(Some("s0"), None)).await;
    assert_eq!((status, &refused["error"]["field"]), (422, &json!("file")));

    let stats = gateway.sandbox.stats();
    assert_eq!(stats.media_uploads, 0, "{stats:?}");
    assert!(stats.rejections.is_empty(), "{stats:?}");
    let counted = |outcome: &str| {
        gateway
            .metrics
            .media
            .with_label_values(&["s0", "upload", outcome])
            .get()
    };
    assert_eq!(counted("too_large"), 1);
    assert_eq!(counted("unsupported_type"), 2);
    assert_eq!(counted("ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_id_is_refused_at_send_and_an_unknown_one_goes_to_meta() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let (status, uploaded) = upload(
        &gateway.api_url,
        Some(KEY_ALL),
        form(
            Some("s0"),
            Some((vec![0x89, b'P', b'N', b'G'], "image/png")),
        ),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let id = uploaded["id"].as_str().expect("a media id").to_owned();
    let image = |id: &str| json!({"from": "s0", "to": USER, "type": "image", "image": {"id": id}});

    let (status, queued) = gateway.send(&image(&id)).await;
    assert_eq!(status, 202, "a fresh id goes: {queued}");

    // Thirty days later: the record the upload left, with its expiry passed.
    let key = gateway_queue::keys::media(&phone_number_id(0), &id);
    let mut redis = gateway.redis().await;
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("the upload is remembered");
    let mut record: Value = serde_json::from_str(&stored).expect("JSON");
    assert!(record["expires_at_ms"].as_i64().expect("expiry") > gateway_domain::clock::unix_ms());
    record["expires_at_ms"] = json!(gateway_domain::clock::unix_ms() - 1_000);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(record.to_string())
        .arg("KEEPTTL")
        .query_async(&mut redis)
        .await
        .expect("SET");

    let queued_before = gateway.queue_len(0).await;
    let (status, refused) = gateway.send(&image(&id)).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "media_expired");
    assert_eq!(refused["error"]["field"], "image.id");
    assert_eq!(gateway.queue_len(0).await, queued_before, "nothing queued");

    // In a batch, the item alone is refused.
    let (status, batch) = gateway
        .post(
            "/send/batch",
            Some(KEY_ALL),
            json!({"messages": [image(&id), image("1234567890123456")]})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        batch["results"][0]["error"]["field"],
        "messages[0].image.id"
    );
    assert_eq!(batch["results"][1]["status"], "queued", "{batch}");

    // An id this gateway never uploaded: Meta decides.
    let (status, queued) = gateway.send(&image("1234567890123456")).await;
    assert_eq!(status, 202, "{queued}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_image_streams_back_byte_for_byte_until_meta_forgets_it() {
    // A service subscribed to inbound messages.
    let service = SignedReceiver::default();
    let service_url = service.start(SERVICE_SECRET).await;
    let gateway = TestGateway::start(GatewayOptions {
        webhooks: true,
        extra_toml: format!(
            "[[subscribers]]\nname = \"bot\"\nurl = \"{service_url}\"\nsecret_env = \"BOT_SECRET\"\n"
        ),
        extra_env: vec![("BOT_SECRET".into(), SERVICE_SECRET.into())],
        ..Default::default()
    })
    .await;
    let file = jpeg(300_000);
    let (_wamid, id) = gateway
        .sandbox
        .inbound_media(&phone_number_id(0), USER, "image/jpeg", file.clone(), "")
        .expect("an inbound image");
    // The forwarded message says where the api serves the file.
    let event = wait_until(
        "the inbound image to be forwarded",
        Duration::from_secs(10),
        || async {
            service
                .bodies()
                .into_iter()
                .find(|b| b["type"] == "inbound")
        },
    )
    .await;
    assert_eq!(event["message"]["type"], "image", "{event}");
    assert_eq!(event["message"]["image"]["id"], id.as_str(), "{event}");
    assert_eq!(event["message"]["image"]["mime_type"], "image/jpeg");
    let sha256 = event["message"]["image"]["sha256"]
        .as_str()
        .expect("sha256");
    assert_eq!(
        sha256,
        hex::encode(Sha256::digest(&file)),
        "Meta's hash of it"
    );
    let media_url = event["media_url"].as_str().expect("media_url");
    assert_eq!(
        media_url,
        format!("/media/{id}?from={}", phone_number_id(0))
    );

    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}{media_url}", gateway.api_url))
        .bearer_auth(KEY_ALL)
        .send()
        .await
        .expect("the api answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.content_length(), Some(file.len() as u64));
    let body = response.bytes().await.expect("the file");
    assert!(body.as_ref() == file.as_slice(), "the same bytes");
    assert_eq!(gateway.sandbox.stats().media_downloads, 1);

    let fetch = |id: String| {
        let (http, url) = (http.clone(), format!("{}/media/{id}", gateway.api_url));
        async move {
            http.get(url)
                .query(&[("from", "s0")])
                .bearer_auth(KEY_ALL)
                .send()
                .await
                .expect("the api answers")
        }
    };
    // Meta's download URL expires (here at once): the file is gone.
    gateway.sandbox.set_media(gateway_sandbox::MediaConfig {
        url_ttl_ms: 0,
        ..Default::default()
    });
    let response = fetch(id.clone()).await;
    assert_eq!(response.status(), 404);
    gateway
        .sandbox
        .set_media(gateway_sandbox::MediaConfig::default());

    // Meta forgets the media.
    assert!(gateway.sandbox.delete_media(&id));
    let response = fetch(id.clone()).await;
    assert_eq!(response.status(), 404);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["error"]["code"], "media_not_found");
    let response = fetch("999999".to_owned()).await;
    assert_eq!(response.status(), 404, "an id Meta never had");

    let counted = |outcome: &str| {
        gateway
            .metrics
            .media
            .with_label_values(&["s0", "download", outcome])
            .get()
    };
    assert_eq!((counted("ok"), counted("not_found")), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_client_allowed_the_sender_moves_its_media() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let api = gateway.api_url.as_str();
    let image = || Some((jpeg(1024), "image/jpeg"));

    let (status, _) = upload(api, None, form(Some("s0"), image())).await;
    assert_eq!(status, 401);
    let (status, _) = upload(api, Some("not-a-key"), form(Some("s0"), image())).await;
    assert_eq!(status, 401);
    let (status, refused) = upload(api, Some(KEY_ONE), form(Some("s1"), image())).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["field"], "from");
    assert_eq!(gateway.sandbox.stats().media_uploads, 0);
    let (status, uploaded) = upload(api, Some(KEY_ONE), form(Some("s0"), image())).await;
    assert_eq!(status, 201, "{uploaded}");

    let (_, id) = gateway
        .sandbox
        .inbound_media(&phone_number_id(1), USER, "image/png", vec![1, 2, 3], "")
        .expect("an inbound image");
    let url = format!("{api}/media/{id}");
    let http = reqwest::Client::new();
    let response = http
        .get(&url)
        .query(&[("from", "s1")])
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 401);
    let response = http
        .get(&url)
        .query(&[("from", "s1")])
        .bearer_auth(KEY_ONE)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 403);
    // Another sender's media is not this one's to read.
    let response = http
        .get(&url)
        .query(&[("from", "s0")])
        .bearer_auth(KEY_ALL)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 404);
    assert_eq!(gateway.sandbox.stats().media_downloads, 0);
}
