//! What the internal services hear about: inbound messages and status
//! events, forwarded to the configured subscribers and to a message's own
//! `callback_url`. This module decides who gets what and what the body
//! says; the notify crate stores, signs, delivers and retries.
//!
//! Bodies are signed with the subscriber's secret, or for a callback with
//! the key of the client that sent the message, so a service checks them
//! with a secret it already holds. Workers speak for what Meta reports; the
//! api and the CLI for a message a client cancelled.

use gateway_config::{SenderSettings, Settings};
use gateway_domain::MessageKind;
use gateway_domain::media_limits::is_media_id;
use gateway_domain::webhook::{InboundMessage, StatusUpdate};
use gateway_queue::{Cancelled, StatusView};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::{Notification, NotifyError, Outbox, SecretString, Signers};

/// Decides who hears of an event and what its body says, and pushes it to
/// the [`Outbox`].
pub struct Notifier {
    outbox: Outbox,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    signer: String,
    url: String,
    messages: bool,
    statuses: bool,
}

impl Notifier {
    pub fn new(outbox: Outbox, settings: &Settings) -> Self {
        let subscribers = settings
            .subscribers
            .iter()
            .map(|s| Subscriber {
                signer: subscriber_signer(&s.name),
                url: s.url.clone(),
                messages: s.messages,
                statuses: s.statuses,
            })
            .collect();
        Self {
            outbox,
            subscribers,
        }
    }

    /// Whether any subscriber takes inbound messages.
    pub fn forwards_inbound(&self) -> bool {
        self.subscribers.iter().any(|s| s.messages)
    }

    /// Forwards an inbound message to the subscribers of `messages`.
    pub async fn inbound(
        &self,
        sender: &SenderSettings,
        message: &InboundMessage,
    ) -> Result<(), NotifyError> {
        let body = inbound_body(sender, message);
        for subscriber in self.subscribers.iter().filter(|s| s.messages) {
            self.push(&subscriber.url, &subscriber.signer, &body)
                .await?;
        }
        Ok(())
    }

    /// Forwards a status to the subscribers of `statuses` and to the
    /// message's callback URL.
    pub async fn status(
        &self,
        sender: &SenderSettings,
        view: &StatusView,
        update: &StatusUpdate,
    ) -> Result<(), NotifyError> {
        let body = status_body(sender, view, update);
        self.push_status(&body, view.callback_url.as_deref(), &view.client)
            .await
    }

    /// Tells the subscribers of `statuses` and the message's callback URL
    /// that a client cancelled it.
    pub async fn cancelled(
        &self,
        sender: &SenderSettings,
        message: &Cancelled,
        at_ms: i64,
    ) -> Result<(), NotifyError> {
        let body = cancelled_body(sender, message, at_ms);
        self.push_status(&body, message.callback_url.as_deref(), &message.client)
            .await
    }

    /// A status event to the subscribers of `statuses` and to the
    /// message's callback URL, signed with its client's key.
    async fn push_status(
        &self,
        body: &str,
        callback_url: Option<&str>,
        client: &str,
    ) -> Result<(), NotifyError> {
        for subscriber in self.subscribers.iter().filter(|s| s.statuses) {
            self.push(&subscriber.url, &subscriber.signer, body).await?;
        }
        if let Some(url) = callback_url {
            self.push(url, &client_signer(client), body).await?;
        }
        Ok(())
    }

    async fn push(&self, url: &str, signer: &str, body: &str) -> Result<(), NotifyError> {
        self.outbox
            .push(&Notification {
                url: url.to_owned(),
                signer: signer.to_owned(),
                body: body.to_owned(),
            })
            .await
    }
}

/// Every secret a notification may be signed with, by signer name.
pub fn signers(settings: &Settings) -> Signers {
    let mut signers = Signers::new();
    for subscriber in &settings.subscribers {
        if let Some(secret) = &subscriber.secret {
            signers.insert(subscriber_signer(&subscriber.name), copy(secret));
        }
    }
    for client in &settings.clients {
        if let Some(key) = &client.key {
            signers.insert(client_signer(&client.name), copy(key));
        }
    }
    signers
}

fn copy(secret: &SecretString) -> SecretString {
    SecretString::from(secret.expose_secret().to_owned())
}

fn subscriber_signer(name: &str) -> String {
    format!("subscriber:{name}")
}

fn client_signer(name: &str) -> String {
    format!("client:{name}")
}

/// The api's path that streams an inbound message's file (`GET
/// /media/{id}?from=`), for media messages (`image`, `audio`, `video`,
/// `document`, `sticker` with an `id`).
fn media_url(sender: &SenderSettings, message: &InboundMessage) -> Option<String> {
    if !MessageKind::parse(&message.kind).is_some_and(MessageKind::is_media) {
        return None;
    }
    let id = message.raw.get(&message.kind)?.get("id")?.as_str()?;
    // Anything but Meta's shape of id would not make a safe path.
    is_media_id(id).then(|| format!("/media/{id}?from={}", sender.phone_number_id))
}

fn inbound_body(sender: &SenderSettings, message: &InboundMessage) -> String {
    let mut body = json!({
        "type": "inbound",
        "sender": sender.name,
        "phone_number_id": sender.phone_number_id,
        "wamid": message.wamid,
        "from": message.from.as_ref().map(|r| r.key()),
        "from_user_id": message.from_user_id.as_ref().map(|r| r.key()),
        "timestamp_ms": message.timestamp_ms,
        "message": message.raw,
    });
    if let Some(url) = media_url(sender, message) {
        body["media_url"] = url.into();
    }
    body.to_string()
}

/// A status event for a message that was never sent: no wamid.
fn cancelled_body(sender: &SenderSettings, message: &Cancelled, at_ms: i64) -> String {
    let mut body = json!({
        "type": "status",
        "message_id": message.id.as_str(),
        "sender": sender.name,
        "phone_number_id": sender.phone_number_id,
        "to": message.recipient,
        "status": "cancelled",
        "timestamp_ms": at_ms,
        "fallback_used": false,
    });
    if let Some(metadata) = message
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
    {
        body["metadata"] = metadata;
    }
    body.to_string()
}

fn status_body(sender: &SenderSettings, view: &StatusView, update: &StatusUpdate) -> String {
    let mut body = json!({
        "type": "status",
        "message_id": view.message_id.as_str(),
        "sender": sender.name,
        "phone_number_id": sender.phone_number_id,
        "to": view.recipient,
        "wamid": update.wamid,
        "status": update.status.as_str(),
        "timestamp_ms": update.timestamp_ms,
        "fallback_used": view.fallback_used,
    });
    if let Some(map) = body.as_object_mut() {
        if let Some(error) = &update.error {
            map.insert(
                "error".into(),
                json!({ "code": error.code, "title": error.title }),
            );
        }
        if let Some(metadata) = view
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
        {
            map.insert("metadata".into(), metadata);
        }
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_domain::webhook::{MetaError, MetaStatus};
    use gateway_domain::{MessageId, MessageStatus, Recipient};
    use std::time::Duration;

    fn sender() -> SenderSettings {
        SenderSettings {
            name: "support".into(),
            phone_number_id: "106540352242922".into(),
            waba_id: "1".into(),
            access_token_env: "T".into(),
            access_token: Some(SecretString::from("token-must-not-leak")),
            rate_per_second: 70,
            fallback_template: None,
            max_age: Duration::from_secs(60),
            max_queue: gateway_config::MaxQueue {
                transactional: Duration::from_secs(300),
                bulk: Duration::from_secs(14_400),
            },
        }
    }

    #[test]
    fn a_status_body_carries_the_message_its_metadata_and_the_error() {
        let id = MessageId::parse("106540352242922-1700000000000-0").expect("id");
        let view = StatusView {
            message_id: id,
            status: MessageStatus::Sent,
            wamid: "wamid.A".into(),
            seen: false,
            client: "billing".into(),
            recipient: "+16505551234".into(),
            callback_url: Some("http://billing.internal/status".into()),
            metadata: Some(r#"{"order":42}"#.into()),
            attempts: 1,
            fallback_used: true,
            has_fallback: false,
            created_ms: 1_700_000_000_000,
            due_ms: 1_700_000_000_000,
        };
        let update = StatusUpdate {
            phone_number_id: "106540352242922".into(),
            wamid: "wamid.A".into(),
            status: MetaStatus::Failed,
            timestamp_ms: 1_700_000_001_000,
            error: Some(MetaError {
                code: 131026,
                title: "Message undeliverable".into(),
            }),
            callback_data: None,
            pricing: None,
            conversation: None,
        };
        let body: Value =
            serde_json::from_str(&status_body(&sender(), &view, &update)).expect("json");
        assert_eq!(body["message_id"], "106540352242922-1700000000000-0");
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error"]["code"], 131026);
        assert_eq!(body["metadata"]["order"], 42);
        assert_eq!(body["fallback_used"], true);
        assert!(!body.to_string().contains("token-must-not-leak"));
    }

    #[test]
    fn an_inbound_body_names_the_user_both_ways() {
        let message = InboundMessage {
            phone_number_id: "106540352242922".into(),
            wamid: "wamid.IN".into(),
            from: Recipient::parse_phone("16505551234").ok(),
            from_user_id: Recipient::parse_user_id("US.13491208655302741918").ok(),
            timestamp_ms: 1_700_000_000_000,
            kind: "text".into(),
            raw: json!({"type": "text", "text": {"body": "hi"}}),
        };
        let body: Value = serde_json::from_str(&inbound_body(&sender(), &message)).expect("json");
        assert_eq!(body["from"], "+16505551234");
        assert_eq!(body["from_user_id"], "US.13491208655302741918");
        assert_eq!(body["message"]["text"]["body"], "hi");
        assert_eq!(body["sender"], "support");
        assert!(body.get("media_url").is_none());
    }

    #[test]
    fn an_inbound_image_says_where_the_api_serves_it() {
        let message = InboundMessage {
            phone_number_id: "106540352242922".into(),
            wamid: "wamid.IN".into(),
            from: Recipient::parse_phone("16505551234").ok(),
            from_user_id: None,
            timestamp_ms: 1_700_000_000_000,
            kind: "image".into(),
            raw: json!({"type": "image", "image": {"id": "1037543291543636", "mime_type": "image/jpeg", "sha256": "ab"}}),
        };
        let body: Value = serde_json::from_str(&inbound_body(&sender(), &message)).expect("json");
        assert_eq!(
            body["media_url"],
            "/media/1037543291543636?from=106540352242922"
        );
        assert_eq!(body["message"]["image"]["id"], "1037543291543636");
    }
}
