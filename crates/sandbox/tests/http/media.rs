//! Meta's media routes: an upload checked like Meta checks it (token,
//! number, type, size for the type, `messaging_product`), its metadata
//! with a download URL that needs the owner's token, and deletion.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{NUMBER, TOKEN, TestSandbox, USER, config};

fn form(product: &str, mime: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("messaging_product", product.to_owned())
        .text("type", mime.to_owned())
        .part(
            "file",
            Part::bytes(bytes)
                .file_name("f")
                .mime_str(mime)
                .expect("mime"),
        )
}

async fn upload(
    sandbox: &TestSandbox,
    number: &str,
    token: &str,
    form: Form,
) -> (StatusCode, Value) {
    let response = sandbox
        .client
        .post(format!("{}/v25.0/{number}/media", sandbox.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_upload_is_checked_as_meta_checks_it() {
    let sandbox = TestSandbox::start(config()).await;
    let png = || form("whatsapp", "image/png", vec![0x89, b'P', b'N', b'G']);

    let (status, body) = upload(&sandbox, NUMBER, "wrong", png()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &190.into())
    );
    let (status, body) = upload(&sandbox, "999", TOKEN, png()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &100.into())
    );
    let (status, body) = upload(
        &sandbox,
        NUMBER,
        TOKEN,
        form("messenger", "image/png", vec![1]),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &100.into())
    );
    let (status, body) = upload(
        &sandbox,
        NUMBER,
        TOKEN,
        form("whatsapp", "image/gif", vec![1]),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &100.into())
    );
    let details = body["error"]["error_data"]["details"]
        .as_str()
        .unwrap_or_default();
    assert!(details.contains("image/jpeg"), "{body}");
    let (status, body) = upload(
        &sandbox,
        NUMBER,
        TOKEN,
        form("whatsapp", "image/webp", vec![0; 500 * 1024 + 1]),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &131_053.into())
    );
    assert_eq!(sandbox.sandbox.stats().media_uploads, 0);

    let (status, body) = upload(&sandbox, NUMBER, TOKEN, png()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().expect("id");
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(sandbox.sandbox.media(id).map(|m| m.file_size), Some(4));
    assert_eq!(sandbox.sandbox.stats().media_uploads, 1);
}

#[tokio::test]
async fn media_is_read_with_the_owner_s_token_through_a_url_until_it_is_deleted() {
    let sandbox = TestSandbox::start(config()).await;
    let (_, id) = sandbox
        .sandbox
        .inbound_media(NUMBER, USER, "image/jpeg", vec![0xFF, 0xD8, 0xFF, 1, 2], "")
        .expect("inbound image");
    let info = |token: &'static str| {
        let request = sandbox
            .client
            .get(format!("{}/v25.0/{id}", sandbox.base))
            .query(&[("phone_number_id", NUMBER)])
            .bearer_auth(token);
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = info("wrong").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &190.into())
    );
    let (status, body) = info(TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mime_type"], "image/jpeg");
    assert_eq!(body["file_size"], 5);
    assert_eq!(body["id"], id.as_str());
    let url = body["url"].as_str().expect("url").to_owned();

    let without = sandbox.client.get(&url).send().await.expect("answers");
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let file = sandbox
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.headers()["content-type"], "image/jpeg");
    assert_eq!(
        file.bytes().await.expect("bytes").as_ref(),
        [0xFF, 0xD8, 0xFF, 1, 2]
    );

    let deleted = sandbox
        .client
        .delete(format!("{}/v25.0/{id}", sandbox.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(deleted.status(), StatusCode::OK);
    let (status, body) = info(TOKEN).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &100.into())
    );
    let gone = sandbox
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}
