//! The recipients' 24-hour windows as the gateway knows them: opened by
//! inbound messages seen on the webhook, closed when Meta answers 131047.
//! Each window is one key that expires when the window closes, so an
//! absent key means "closed" and nothing needs sweeping.

use gateway_domain::rules::window;

use crate::{Queue, QueueError, keys, scripts};

impl Queue {
    /// Records an inbound message and opens its user's window under each of
    /// `recipients` (their phone number and/or BSUID). `false` when the
    /// message was handled before (a duplicate delivery by Meta).
    pub async fn record_inbound(
        &self,
        phone_number_id: &str,
        wamid: &str,
        recipients: &[&str],
        inbound_ms: i64,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let mut invocation = scripts::RecordInbound {
            seen_key: keys::inbound(phone_number_id, wamid).into(),
            inbound_ms: inbound_ms.into(),
            closes_ms: window::closes_at(inbound_ms).into(),
            now_ms: now_ms.into(),
            seen_ttl_ms: keys::INBOUND_SEEN_MS.into(),
        }
        .invocation();
        for recipient in recipients {
            invocation.key(keys::window(phone_number_id, recipient));
        }
        let new: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(new == 1)
    }

    /// Whether this inbound message was handled before.
    pub async fn inbound_seen(
        &self,
        phone_number_id: &str,
        wamid: &str,
    ) -> Result<bool, QueueError> {
        Ok(redis::cmd("EXISTS")
            .arg(keys::inbound(phone_number_id, wamid))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// The recipient's last inbound message (Unix ms) if their window is open.
    pub async fn window_opened_at(
        &self,
        phone_number_id: &str,
        recipient: &str,
    ) -> Result<Option<i64>, QueueError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(keys::window(phone_number_id, recipient))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(value.and_then(|v| v.parse().ok()))
    }

    /// Meta says the window is closed (131047): believe it until the user writes again.
    pub async fn close_window(
        &self,
        phone_number_id: &str,
        recipient: &str,
    ) -> Result<(), QueueError> {
        let _: i64 = redis::cmd("DEL")
            .arg(keys::window(phone_number_id, recipient))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
