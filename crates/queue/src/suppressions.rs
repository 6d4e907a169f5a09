//! Each sender's suppressions, in one hash (`gw:{pnid}:suppressed`): per
//! recipient and scope (`<recipient>|marketing`, `<recipient>|all`), Meta's
//! code, where it came from, when, and until when. One read (`HMGET` of
//! both scopes) tells whether a message may go; an entry past its time is
//! as good as absent and is removed when met.

use gateway_domain::rules::suppression::Scope;
use serde::{Deserialize, Serialize};

use crate::{Queue, QueueError, keys};

/// One suppression of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub recipient: String,
    pub scope: String,
    /// Meta's code (131050, 131049, 131026), also for a keyword opt-out.
    pub code: i64,
    /// `meta`, `keyword` or `operator`.
    pub source: String,
    pub at_ms: i64,
    /// Until when (Unix ms); `None`: until cleared.
    pub until_ms: Option<i64>,
}

/// What is stored per field: the rest is in the field's name.
#[derive(Serialize, Deserialize)]
struct Stored {
    code: i64,
    source: String,
    at_ms: i64,
    until_ms: Option<i64>,
}

fn field(recipient: &str, scope: Scope) -> String {
    format!("{recipient}|{}", scope.as_str())
}

impl Suppression {
    pub fn new(
        recipient: &str,
        scope: Scope,
        code: i64,
        source: &str,
        at_ms: i64,
        until_ms: Option<i64>,
    ) -> Self {
        Self {
            recipient: recipient.to_owned(),
            scope: scope.as_str().to_owned(),
            code,
            source: source.to_owned(),
            at_ms,
            until_ms,
        }
    }

    fn from_field(field: &str, value: &str) -> Option<Self> {
        let (recipient, scope) = field.rsplit_once('|')?;
        let stored: Stored = serde_json::from_str(value).ok()?;
        Some(Self {
            recipient: recipient.to_owned(),
            scope: scope.to_owned(),
            code: stored.code,
            source: stored.source,
            at_ms: stored.at_ms,
            until_ms: stored.until_ms,
        })
    }

    fn in_force(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }
}

impl Queue {
    /// Records `suppression` (replacing one of the same recipient and scope).
    pub async fn suppress(
        &self,
        phone_number_id: &str,
        suppression: &Suppression,
    ) -> Result<(), QueueError> {
        let value = serde_json::to_string(&Stored {
            code: suppression.code,
            source: suppression.source.clone(),
            at_ms: suppression.at_ms,
            until_ms: suppression.until_ms,
        })
        .map_err(|e| QueueError::Protocol(e.to_string()))?;
        let _: () = redis::cmd("HSET")
            .arg(keys::suppressed(phone_number_id))
            .arg(format!("{}|{}", suppression.recipient, suppression.scope))
            .arg(value)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The suppression in force that holds back a message to `recipient`
    /// (`marketing`: a marketing template), if any.
    pub async fn suppression_for(
        &self,
        phone_number_id: &str,
        recipient: &str,
        marketing: bool,
        now_ms: i64,
    ) -> Result<Option<Suppression>, QueueError> {
        let key = keys::suppressed(phone_number_id);
        let fields = [
            field(recipient, Scope::All),
            field(recipient, Scope::Marketing),
        ];
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(&fields)
            .query_async(&mut self.conn.clone())
            .await?;
        let mut found = None;
        for (name, value) in fields.iter().zip(values) {
            let Some(suppression) = value.and_then(|v| Suppression::from_field(name, &v)) else {
                continue;
            };
            if !suppression.in_force(now_ms) {
                let _: Result<(), _> = redis::cmd("HDEL")
                    .arg(&key)
                    .arg(name)
                    .query_async(&mut self.conn.clone())
                    .await;
                continue;
            }
            let holds_back =
                Scope::parse(&suppression.scope).is_some_and(|s| s.holds_back(marketing));
            if holds_back && found.is_none() {
                found = Some(suppression);
            }
        }
        Ok(found)
    }

    /// Clears `recipient`'s suppressions of `scope` (or all) that `which`
    /// picks. Returns how many.
    pub async fn clear_suppression(
        &self,
        phone_number_id: &str,
        recipient: &str,
        scope: Option<Scope>,
        which: impl Fn(&Suppression) -> bool,
    ) -> Result<u64, QueueError> {
        let key = keys::suppressed(phone_number_id);
        let scopes = match scope {
            Some(scope) => vec![scope],
            None => vec![Scope::All, Scope::Marketing],
        };
        let mut cleared = 0;
        for scope in scopes {
            let name = field(recipient, scope);
            let value: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg(&name)
                .query_async(&mut self.conn.clone())
                .await?;
            if !value
                .and_then(|v| Suppression::from_field(&name, &v))
                .is_some_and(|s| which(&s))
            {
                continue;
            }
            let removed: u64 = redis::cmd("HDEL")
                .arg(&key)
                .arg(&name)
                .query_async(&mut self.conn.clone())
                .await?;
            cleared += removed;
        }
        Ok(cleared)
    }

    /// A page of the sender's suppressions in force, from `cursor` (0 to
    /// start); the next cursor is 0 at the end.
    pub async fn suppressions(
        &self,
        phone_number_id: &str,
        cursor: u64,
        count: usize,
        now_ms: i64,
    ) -> Result<(Vec<Suppression>, u64), QueueError> {
        let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(keys::suppressed(phone_number_id))
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        let page = pairs
            .iter()
            .filter_map(|(name, value)| Suppression::from_field(name, value))
            .filter(|s| s.in_force(now_ms))
            .collect();
        Ok((page, next))
    }
}
