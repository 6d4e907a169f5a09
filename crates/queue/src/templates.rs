//! Each WABA's template registry in Redis, one hash per WABA
//! (`gw:{waba:<id>}:templates`, see [`keys`]):
//!
//! - `<name>|<language>` → the entry as compact JSON
//!   ([`TemplateEntry`]: category, status, parameter counts);
//! - `#synced_ms` → when a worker last replaced it in full from Meta's
//!   listing (absent: never, and `/send` refuses nothing it does not hold);
//! - `#version` → a new value with every write, so a reader reloads the
//!   hash only when it changed (one `HGET` instead of an `HGETALL`).
//!
//! Workers write it: a full sync replaces the hash in one `MULTI`; a
//! webhook or an answer from Meta changes one entry ([`TemplateChange`]).
//! The api and the workers read it through a [`TemplateCache`]: in memory,
//! its version looked at again at most every [`TEMPLATE_REFRESH`] per
//! WABA, and at every use while the WABA was never synced (so a first
//! sync counts at once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_domain::templates::{TemplateCategory, TemplateEntry, WabaTemplates};

use crate::{Queue, QueueError, keys};

/// How long a reader trusts its copy of a WABA's registry before it looks
/// at the version again.
pub const TEMPLATE_REFRESH: Duration = Duration::from_secs(2);

/// The hash field of the last complete sync (Unix ms).
const SYNCED: &str = "#synced_ms";
/// The hash field that changes with every write.
const VERSION: &str = "#version";

/// The hash field of a template in a language.
fn field(name: &str, language: &str) -> String {
    format!("{name}|{language}")
}

/// One change to one entry, from a webhook or from Meta's answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChange {
    /// A new status (`APPROVED`, `PAUSED`, ...).
    Status(String),
    /// A new category.
    Category(TemplateCategory),
    /// Meta says it does not exist (132001): the entry goes.
    Gone,
}

impl Queue {
    /// A WABA's registry as Redis holds it now. Entries that do not parse
    /// (written by something else) are left out.
    pub async fn templates(&self, waba_id: &str) -> Result<WabaTemplates, QueueError> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::templates(waba_id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(registry_of(&all))
    }

    /// The registry's version; `None` when nothing was ever written.
    pub async fn templates_version(&self, waba_id: &str) -> Result<Option<String>, QueueError> {
        Ok(redis::cmd("HGET")
            .arg(keys::templates(waba_id))
            .arg(VERSION)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Replaces a WABA's registry with what Meta listed, at once.
    pub async fn replace_templates(
        &self,
        waba_id: &str,
        entries: &[(String, String, TemplateEntry)],
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let key = keys::templates(waba_id);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&key).ignore();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg(SYNCED)
            .arg(now_ms)
            .arg(VERSION)
            .arg(new_version());
        for (name, language, entry) in entries {
            hset.arg(field(name, language)).arg(encode(entry)?);
        }
        pipe.add_command(hset).ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Changes one entry; `false` when the registry does not hold it (a
    /// status or category for a template it never listed: the caller may
    /// sync the WABA to learn its components).
    pub async fn change_template(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
        change: &TemplateChange,
    ) -> Result<bool, QueueError> {
        let key = keys::templates(waba_id);
        let field = field(name, language);
        let mut conn = self.conn.clone();
        let stored: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg(&field)
            .query_async(&mut conn)
            .await?;
        let Some(mut entry) = stored.and_then(|s| serde_json::from_str::<TemplateEntry>(&s).ok())
        else {
            return Ok(false);
        };
        let mut pipe = redis::pipe();
        match change {
            TemplateChange::Status(status) => entry.status = status.trim().to_ascii_uppercase(),
            TemplateChange::Category(category) => entry.category = Some(*category),
            TemplateChange::Gone => {
                pipe.cmd("HDEL").arg(&key).arg(&field).ignore();
            }
        }
        if *change != TemplateChange::Gone {
            pipe.cmd("HSET")
                .arg(&key)
                .arg(&field)
                .arg(encode(&entry)?)
                .ignore();
        }
        pipe.cmd("HSET")
            .arg(&key)
            .arg(VERSION)
            .arg(new_version())
            .ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(true)
    }

    /// Takes the right to sync a WABA's registry for `hold` (true), unless
    /// another worker took it within that time (false).
    pub async fn take_template_sync(
        &self,
        waba_id: &str,
        worker: &str,
        hold: Duration,
    ) -> Result<bool, QueueError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(keys::templates_sync(waba_id))
            .arg(worker)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken.is_some())
    }
}

fn encode(entry: &TemplateEntry) -> Result<String, QueueError> {
    serde_json::to_string(entry).map_err(|e| QueueError::Protocol(e.to_string()))
}

/// A fresh version: unique enough that two writes never share one.
fn new_version() -> String {
    ulid::Ulid::new().to_string()
}

/// The registry a hash holds.
fn registry_of(all: &HashMap<String, String>) -> WabaTemplates {
    let synced_ms = all.get(SYNCED).and_then(|t| t.parse().ok());
    let entries = all.iter().filter_map(|(field, value)| {
        let (name, language) = field.split_once('|')?;
        let entry = serde_json::from_str::<TemplateEntry>(value).ok()?;
        Some((name.to_owned(), language.to_owned(), entry))
    });
    WabaTemplates::new(synced_ms, entries)
}

/// A process's copy of the registries it uses, refreshed from Redis when
/// their version changed (looked at again after [`TEMPLATE_REFRESH`]).
pub struct TemplateCache {
    queue: Queue,
    refresh: Duration,
    wabas: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
struct Cached {
    version: Option<String>,
    templates: Arc<WabaTemplates>,
    checked: Instant,
}

impl TemplateCache {
    pub fn new(queue: Queue, refresh: Duration) -> Self {
        Self {
            queue,
            refresh,
            wabas: Mutex::default(),
        }
    }

    /// The WABA's registry, from memory when it was looked at within the
    /// refresh time and was synced; when Redis cannot be read, the last
    /// copy if there is one.
    pub async fn get(&self, waba_id: &str) -> Result<Arc<WabaTemplates>, QueueError> {
        let cached = self.lock().get(waba_id).cloned();
        if let Some(cached) = &cached
            && cached.templates.synced_ms.is_some()
            && cached.checked.elapsed() < self.refresh
        {
            return Ok(cached.templates.clone());
        }
        let version = match self.queue.templates_version(waba_id).await {
            Ok(version) => version,
            Err(error) => return cached.map(|c| c.templates).ok_or(error),
        };
        if let Some(cached) = cached
            && cached.version == version
        {
            let templates = cached.templates.clone();
            self.store(
                waba_id,
                Cached {
                    checked: Instant::now(),
                    ..cached
                },
            );
            return Ok(templates);
        }
        let templates = Arc::new(if version.is_some() {
            self.queue.templates(waba_id).await?
        } else {
            WabaTemplates::default()
        });
        self.store(
            waba_id,
            Cached {
                version,
                templates: templates.clone(),
                checked: Instant::now(),
            },
        );
        Ok(templates)
    }

    /// Forgets the copy of a WABA's registry (this process changed it).
    pub fn forget(&self, waba_id: &str) {
        self.lock().remove(waba_id);
    }

    fn store(&self, waba_id: &str, cached: Cached) {
        self.lock().insert(waba_id.to_owned(), cached);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.wabas.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_reads_back_as_the_registry() {
        let entry = TemplateEntry::from_meta(
            Some("MARKETING"),
            "APPROVED",
            Some(&serde_json::json!([{"type": "BODY", "text": "Hi {{1}}"}])),
        );
        let all: HashMap<String, String> = [
            (SYNCED.to_owned(), "1700000000000".to_owned()),
            (VERSION.to_owned(), new_version()),
            (field("promo", "en_US"), encode(&entry).expect("json")),
            ("broken|en_US".to_owned(), "{not json".to_owned()),
            ("no_separator".to_owned(), encode(&entry).expect("json")),
        ]
        .into_iter()
        .collect();
        let registry = registry_of(&all);
        assert_eq!(registry.synced_ms, Some(1_700_000_000_000));
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.get("promo", "en_US"), Some(&entry));
        assert_eq!(registry_of(&HashMap::new()), WabaTemplates::default());
    }
}
