//! Meta's media store, in memory: files uploaded to a number (`POST
//! /{version}/{phone_number_id}/media`) and files users sent in inbound
//! messages, each under a numeric media id owned by one number. A media id
//! answers its metadata with a download `url` that works for
//! [`MediaConfig::url_ttl_ms`] (Meta: 5 minutes) and only with the owning
//! number's bearer token, as Meta's `lookaside.fbsbx.com` URLs do; deleted
//! media is gone at once.
//!
//! Meta's limits per type, as its documentation lists them (the sandbox's
//! own table, apart from the gateway's): image jpeg/png 5 MB; audio aac,
//! amr, mpeg, mp4, ogg 16 MB; video mp4/3gpp 16 MB; documents (text, pdf,
//! Office) 100 MB; sticker webp 500 KB (100 KB unless animated; not told
//! apart). A megabyte is 1,048,576 bytes. Memory is bounded: beyond
//! [`MediaConfig::store_bytes`] the oldest files are forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::locks::lock;
use crate::random::Random;

const MB: u64 = 1024 * 1024;

/// The path the download URLs point at (as Meta's lookaside host has it).
pub(crate) const DOWNLOAD_PATH: &str = "/whatsapp_business/attachments/";

/// How media behaves.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// How long a download URL works after the metadata read that made it.
    pub url_ttl_ms: u64,
    /// The most bytes of files kept; the oldest go first beyond it.
    pub store_bytes: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            url_ttl_ms: 5 * 60 * 1000,
            store_bytes: 512 * MB,
        }
    }
}

/// The message type a MIME type is sent as, and its largest file.
pub(crate) fn limit(mime_type: &str) -> Option<(&'static str, u64)> {
    let essence = mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(match essence.as_str() {
        "image/jpeg" | "image/png" => ("image", 5 * MB),
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" => ("audio", 16 * MB),
        "video/mp4" | "video/3gpp" => ("video", 16 * MB),
        "text/plain"
        | "application/pdf"
        | "application/msword"
        | "application/vnd.ms-excel"
        | "application/vnd.ms-powerpoint"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
            ("document", 100 * MB)
        }
        "image/webp" => ("sticker", 500 * 1024),
        _ => return None,
    })
}

/// The types Meta lists in its refusal of another.
pub(crate) const SUPPORTED_TYPES: &str = "audio/aac, audio/mp4, audio/mpeg, audio/amr, audio/ogg, \
     text/plain, application/pdf, application/vnd.ms-powerpoint, application/msword, \
     application/vnd.ms-excel, application/vnd.openxmlformats-officedocument.wordprocessingml.document, \
     application/vnd.openxmlformats-officedocument.presentationml.presentation, \
     application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, image/jpeg, image/png, \
     image/webp, video/mp4, video/3gpp";

/// One stored file.
#[derive(Clone, Debug)]
pub(crate) struct StoredMedia {
    pub(crate) id: String,
    pub(crate) phone_number_id: String,
    pub(crate) mime_type: String,
    pub(crate) sha256: String,
    pub(crate) bytes: Bytes,
}

/// A file's metadata, for tests (`Sandbox::media`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    pub id: String,
    pub phone_number_id: String,
    pub mime_type: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub file_size: u64,
}

impl From<&StoredMedia> for MediaFile {
    fn from(m: &StoredMedia) -> Self {
        Self {
            id: m.id.clone(),
            phone_number_id: m.phone_number_id.clone(),
            mime_type: m.mime_type.clone(),
            sha256: m.sha256.clone(),
            file_size: m.bytes.len() as u64,
        }
    }
}

struct Link {
    media_id: String,
    expires: Instant,
}

/// At most this many live download links; expired ones are dropped first.
const LINKS_MOST: usize = 10_000;

#[derive(Default)]
struct Store {
    files: HashMap<String, StoredMedia>,
    /// Ids oldest first, for eviction.
    order: VecDeque<String>,
    bytes: u64,
    links: HashMap<String, Link>,
}

pub(crate) struct MediaStore {
    config: Mutex<MediaConfig>,
    store: Mutex<Store>,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStore").finish_non_exhaustive()
    }
}

impl MediaStore {
    pub(crate) fn new(config: MediaConfig) -> Self {
        Self {
            config: Mutex::new(config),
            store: Mutex::new(Store::default()),
        }
    }

    pub(crate) fn config(&self) -> MediaConfig {
        lock(&self.config).clone()
    }

    pub(crate) fn set_config(&self, config: MediaConfig) {
        *lock(&self.config) = config;
    }

    /// Stores a file for `phone_number_id` under a new id.
    pub(crate) fn store(
        &self,
        phone_number_id: &str,
        mime_type: &str,
        bytes: Bytes,
        random: &Random,
    ) -> StoredMedia {
        // Meta's ids are 15 to 16 digits.
        let id = (1_000_000_000_000_000 + random.next_u64() % 8_000_000_000_000_000).to_string();
        let media = StoredMedia {
            id: id.clone(),
            phone_number_id: phone_number_id.to_owned(),
            mime_type: mime_type.to_owned(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
        };
        let most = self.config().store_bytes;
        let mut store = lock(&self.store);
        store.bytes += media.bytes.len() as u64;
        store.files.insert(id.clone(), media.clone());
        store.order.push_back(id);
        while store.bytes > most && store.order.len() > 1 {
            if let Some(oldest) = store.order.pop_front()
                && let Some(gone) = store.files.remove(&oldest)
            {
                store.bytes -= gone.bytes.len() as u64;
            }
        }
        media
    }

    pub(crate) fn get(&self, media_id: &str) -> Option<StoredMedia> {
        lock(&self.store).files.get(media_id).cloned()
    }

    pub(crate) fn contains(&self, media_id: &str) -> bool {
        lock(&self.store).files.contains_key(media_id)
    }

    /// Forgets a file; false when there was none.
    pub(crate) fn delete(&self, media_id: &str) -> bool {
        let mut store = lock(&self.store);
        let Some(gone) = store.files.remove(media_id) else {
            return false;
        };
        store.bytes -= gone.bytes.len() as u64;
        store.order.retain(|id| id != media_id);
        true
    }

    /// A new download link for a file: its query string (`mid`, `ext`: the
    /// expiry in Unix seconds, `hash`), valid for the configured time.
    pub(crate) fn link(&self, media_id: &str, random: &Random) -> String {
        let ttl = Duration::from_millis(self.config().url_ttl_ms);
        let now = Instant::now();
        let hash = format!("{:016x}{:016x}", random.next_u64(), random.next_u64());
        let ext = (SystemTime::now() + ttl)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut store = lock(&self.store);
        if store.links.len() >= LINKS_MOST {
            store.links.retain(|_, link| link.expires > now);
        }
        if store.links.len() < LINKS_MOST {
            store.links.insert(
                hash.clone(),
                Link {
                    media_id: media_id.to_owned(),
                    expires: now + ttl,
                },
            );
        }
        format!("mid={media_id}&ext={ext}&hash={hash}")
    }

    /// The file a download link leads to while it is valid and the file
    /// is still there.
    pub(crate) fn follow(&self, media_id: &str, hash: &str) -> Option<StoredMedia> {
        let store = lock(&self.store);
        let link = store.links.get(hash)?;
        if link.media_id != media_id || link.expires <= Instant::now() {
            return None;
        }
        store.files.get(media_id).cloned()
    }

    pub(crate) fn reset(&self) {
        *lock(&self.store) = Store::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_s_types_have_their_limits() {
        assert_eq!(limit("image/jpeg"), Some(("image", 5 * MB)));
        assert_eq!(limit("audio/ogg; codecs=opus"), Some(("audio", 16 * MB)));
        assert_eq!(limit("application/pdf"), Some(("document", 100 * MB)));
        assert_eq!(limit("image/webp"), Some(("sticker", 500 * 1024)));
        assert_eq!(limit("image/gif"), None);
        assert_eq!(limit("application/x-msdownload"), None);
    }

    #[test]
    fn a_link_leads_to_its_file_until_it_expires_or_the_file_is_deleted() {
        let random = Random::new(7);
        let store = MediaStore::new(MediaConfig {
            url_ttl_ms: 60_000,
            ..MediaConfig::default()
        });
        let media = store.store("1", "image/png", Bytes::from_static(b"png"), &random);
        assert_eq!(
            media.sha256,
            hex::encode(Sha256::digest(b"png")),
            "the sha256 is the content's"
        );
        let query = store.link(&media.id, &random);
        let hash = query.rsplit("hash=").next().expect("hash");
        assert!(store.follow(&media.id, hash).is_some());
        assert!(store.follow(&media.id, "0000").is_none());
        assert!(store.follow("other", hash).is_none());
        assert!(store.delete(&media.id));
        assert!(store.follow(&media.id, hash).is_none());
        assert!(!store.delete(&media.id));

        store.set_config(MediaConfig {
            url_ttl_ms: 0,
            ..MediaConfig::default()
        });
        let media = store.store("1", "image/png", Bytes::from_static(b"png"), &random);
        let query = store.link(&media.id, &random);
        let hash = query.rsplit("hash=").next().expect("hash");
        assert!(store.follow(&media.id, hash).is_none(), "expired at once");
    }

    #[test]
    fn the_oldest_files_go_beyond_the_store_s_bytes() {
        let random = Random::new(7);
        let store = MediaStore::new(MediaConfig {
            store_bytes: 10,
            ..MediaConfig::default()
        });
        let first = store.store("1", "text/plain", Bytes::from_static(b"123456"), &random);
        let second = store.store("1", "text/plain", Bytes::from_static(b"123456"), &random);
        assert!(!store.contains(&first.id));
        assert!(store.contains(&second.id));
    }
}
