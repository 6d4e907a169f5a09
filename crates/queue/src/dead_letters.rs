//! The dead-letter stream of each sender: messages that failed for good,
//! with Meta's code, the reason and the attempts, and everything needed to
//! queue them again once the cause is fixed (a template approved, a token
//! replaced). A replayed message keeps its id and its history.

use std::collections::HashMap;

use gateway_domain::MessageId;
use redis::Value;
use serde::Serialize;

use crate::{Queue, QueueError, fields, history_event, keys, scripts};

/// One failed message, as listed for ops.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Where it sits in the dead-letter stream.
    pub entry_id: String,
    pub id: String,
    pub sender: String,
    /// The client that sent it.
    pub client: String,
    pub recipient: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: i64,
    pub title: String,
    pub reason: String,
    pub attempts: u32,
    pub failed_ms: i64,
    /// The queue entry's fields, for replay.
    #[serde(skip)]
    entry: Vec<(String, String)>,
}

/// Which dead letters to list, replay or purge; `None` matches any.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub code: Option<i64>,
    pub ids: Option<Vec<String>>,
    /// Only the messages this client sent.
    pub client: Option<String>,
}

impl DeadLetterFilter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.code.is_none_or(|code| code == letter.code)
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&letter.id))
            && self
                .client
                .as_ref()
                .is_none_or(|client| *client == letter.client)
    }
}

/// Dead letters read per round trip, and at most held in memory by a
/// replay or a purge: a sender may hold about 100,000.
const PAGE: usize = 1_000;

/// One page of a dead-letter stream: the letters in it that match, and
/// where the next page starts (`None` after the last).
struct Page {
    letters: Vec<DeadLetter>,
    next: Option<String>,
}

impl Queue {
    /// The sender's dead letters matching `filter`, oldest first, at most `limit`.
    pub async fn dead_letters(
        &self,
        phone_number_id: &str,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let key = keys::dead_letters(phone_number_id);
        let mut found = Vec::new();
        let mut start = "-".to_owned();
        while found.len() < limit {
            let page = self.dead_letter_page(&key, &start, "+", filter).await?;
            found.extend(page.letters);
            match page.next {
                Some(next) => start = next,
                None => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Queues the matching dead letters of the sender again; returns how
    /// many. Works a page at a time, and only on the letters there were
    /// when it began: a replayed message that fails again meanwhile is not
    /// replayed a second time.
    pub async fn replay_dead_letters(
        &self,
        phone_number_id: &str,
        filter: &DeadLetterFilter,
        now_ms: i64,
    ) -> Result<usize, QueueError> {
        let key = keys::dead_letters(phone_number_id);
        let Some(newest) = self.newest_dead_letter(&key).await? else {
            return Ok(0);
        };
        let mut replayed = 0;
        let mut start = "-".to_owned();
        loop {
            let page = self.dead_letter_page(&key, &start, &newest, filter).await?;
            replayed += self
                .replay_page(phone_number_id, &page.letters, now_ms)
                .await?;
            match page.next {
                Some(next) => start = next,
                None => return Ok(replayed),
            }
        }
    }

    /// Replays `letters` (at most a page) in one pipeline; returns how many
    /// were still there to replay.
    async fn replay_page(
        &self,
        phone_number_id: &str,
        letters: &[DeadLetter],
        now_ms: i64,
    ) -> Result<usize, QueueError> {
        if letters.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for letter in letters {
            let mut invocation = scripts::ReplayDeadLetter {
                dead_key: keys::dead_letters(phone_number_id).into(),
                stream_key: keys::stream(phone_number_id, letter.lane()).into(),
                record_key: keys::record(phone_number_id, &letter.id).into(),
                dead_entry_id: (&letter.entry_id).into(),
                message_id: (&letter.id).into(),
                now_ms: now_ms.into(),
                event: history_event(
                    "queued",
                    now_ms,
                    Some(("detail", "replayed from the dead letters")),
                )
                .into(),
                record_ttl_ms: self.record_ttl_ms.into(),
            }
            .invocation();
            for (field, value) in &letter.entry {
                invocation.arg(field).arg(value);
            }
            pipe.add_command(invocation.command());
        }
        let results: Vec<i64> = match pipe.query_async(&mut self.conn.clone()).await {
            Ok(results) => results,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(scripts::ReplayDeadLetter::source())
                    .query_async(&mut self.conn.clone())
                    .await?;
                pipe.query_async(&mut self.conn.clone()).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(results.into_iter().filter(|r| *r == 1).count())
    }

    /// Deletes the sender's dead letters matching `filter` that failed
    /// before `failed_before_ms` (all of them when `None`); returns how
    /// many. A page at a time, among the letters there were when it began.
    /// Their message records are left to expire on their own.
    pub async fn purge_dead_letters(
        &self,
        phone_number_id: &str,
        filter: &DeadLetterFilter,
        failed_before_ms: Option<i64>,
    ) -> Result<usize, QueueError> {
        let key = keys::dead_letters(phone_number_id);
        let Some(newest) = self.newest_dead_letter(&key).await? else {
            return Ok(0);
        };
        let mut purged = 0;
        let mut start = "-".to_owned();
        loop {
            let page = self.dead_letter_page(&key, &start, &newest, filter).await?;
            let doomed: Vec<&str> = page
                .letters
                .iter()
                .filter(|letter| {
                    failed_before_ms.is_none_or(|cutoff| letter.failed_at_ms() < cutoff)
                })
                .map(|letter| letter.entry_id.as_str())
                .collect();
            if !doomed.is_empty() {
                // XDEL counts only what it removed: a letter replayed or
                // purged meanwhile by someone else is not counted twice.
                let removed: usize = redis::cmd("XDEL")
                    .arg(&key)
                    .arg(&doomed)
                    .query_async(&mut self.conn.clone())
                    .await?;
                purged += removed;
            }
            match page.next {
                Some(next) => start = next,
                None => return Ok(purged),
            }
        }
    }

    /// Up to [`PAGE`] entries of the dead-letter stream `key` from `start`
    /// to `end` (XRANGE bounds: `-`, `+`, an id, `(id` to exclude it), the
    /// matching ones parsed.
    async fn dead_letter_page(
        &self,
        key: &str,
        start: &str,
        end: &str,
        filter: &DeadLetterFilter,
    ) -> Result<Page, QueueError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut self.conn.clone())
            .await?;
        // Read from the reply itself, so that an entry that does not parse
        // still moves the page on.
        let next = if reply.ids.len() < PAGE {
            None
        } else {
            reply.ids.last().map(|e| format!("({}", e.id))
        };
        let letters = reply
            .ids
            .into_iter()
            .filter_map(|e| DeadLetter::from_entry(e.id, e.map))
            .filter(|letter| filter.matches(letter))
            .collect();
        Ok(Page { letters, next })
    }

    /// The id of the newest entry of the dead-letter stream `key`, if any.
    async fn newest_dead_letter(&self, key: &str) -> Result<Option<String>, QueueError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply.ids.into_iter().next().map(|e| e.id))
    }
}

impl DeadLetter {
    /// The stream a replay puts it in: bulk stays bulk, the rest is transactional.
    fn lane(&self) -> gateway_domain::Lane {
        MessageId::parse(&self.id).map_or(gateway_domain::Lane::Transactional, |id| id.lane())
    }

    /// When it failed (Unix ms): its recorded time, else its entry id's.
    fn failed_at_ms(&self) -> i64 {
        if self.failed_ms > 0 {
            return self.failed_ms;
        }
        self.entry_id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0)
    }

    fn from_entry(entry_id: String, map: HashMap<String, Value>) -> Option<Self> {
        let values: HashMap<String, String> = map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::BulkString(bytes) => String::from_utf8(bytes).ok().map(|s| (k, s)),
                _ => None,
            })
            .collect();
        let get = |name: &str| values.get(name).cloned();
        let id = get("id")?;
        MessageId::parse(&id)?;
        let entry = fields::MESSAGE
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), get(name)?)))
            .collect();
        Some(Self {
            entry_id,
            sender: get(fields::SENDER).unwrap_or_default(),
            client: get(fields::CLIENT).unwrap_or_default(),
            recipient: get(fields::RECIPIENT).unwrap_or_default(),
            kind: get(fields::KIND).unwrap_or_default(),
            code: get("code").and_then(|c| c.parse().ok()).unwrap_or(0),
            title: get("title").unwrap_or_default(),
            reason: get("reason").unwrap_or_default(),
            attempts: get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
            failed_ms: get("failed_ms").and_then(|t| t.parse().ok()).unwrap_or(0),
            entry,
            id,
        })
    }
}
