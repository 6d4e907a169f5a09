//! Media ids the gateway uploaded, remembered with when Meta forgets them.
//! Meta keeps an uploaded media id for 30 days; a send naming it later
//! fails at Meta, after the message was accepted and queued. The api
//! stores each upload here (`gw:{pnid}:media:<id>`, JSON [`MediaRecord`])
//! and `/send` refuses an id whose `expires_at_ms` has passed. The key
//! lives [`MEDIA_KEPT_AFTER_EXPIRY`] beyond the expiry, so that an expired
//! id is still recognised for that long; an id the gateway never saw
//! (uploaded elsewhere) is not refused: Meta decides.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Queue, QueueError, keys};

/// How long a record outlives its media id's expiry.
pub const MEDIA_KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);

/// One uploaded media file, as `/send` needs to judge its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// When Meta forgets the id (Unix ms).
    pub expires_at_ms: i64,
    pub mime_type: String,
    /// The file's size.
    pub bytes: u64,
}

impl Queue {
    /// Remembers an upload until `MEDIA_KEPT_AFTER_EXPIRY` after its expiry.
    pub async fn remember_media(
        &self,
        phone_number_id: &str,
        media_id: &str,
        record: &MediaRecord,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let json = serde_json::to_string(record)
            .map_err(|e| QueueError::Protocol(format!("media record: {e}")))?;
        let keep_ms = (record.expires_at_ms - now_ms).max(0)
            + i64::try_from(MEDIA_KEPT_AFTER_EXPIRY.as_millis()).unwrap_or(i64::MAX / 2);
        let () = redis::cmd("SET")
            .arg(keys::media(phone_number_id, media_id))
            .arg(json)
            .arg("PX")
            .arg(keep_ms.max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The records of uploads, each `(phone_number_id, media_id)` in
    /// order, in one round trip: `None` for an id the gateway did not
    /// upload (or no longer knows). A record that does not parse is
    /// reported, not guessed at.
    pub async fn media(
        &self,
        ids: &[(&str, &str)],
    ) -> Result<Vec<Option<MediaRecord>>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (phone_number_id, media_id) in ids {
            pipe.cmd("GET").arg(keys::media(phone_number_id, media_id));
        }
        let found: Vec<Option<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        if found.len() != ids.len() {
            return Err(QueueError::Protocol("media records: reply count".into()));
        }
        found
            .into_iter()
            .zip(ids)
            .map(|(json, (_, media_id))| {
                json.map(|json| {
                    serde_json::from_str(&json)
                        .map_err(|e| QueueError::Protocol(format!("media record {media_id}: {e}")))
                })
                .transpose()
            })
            .collect()
    }
}
