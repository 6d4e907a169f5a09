//! A business portfolio's messaging limit: the unique users its numbers
//! start conversations with (a template outside an open window) in a
//! moving 24 h, counted in Redis across all of its numbers and all
//! workers, exactly. A conversation that would pass the limit is not
//! counted and is told when room frees; the caller holds the message until
//! then. The limit Meta reports is kept beside the count.

use std::time::Duration;

use redis::Value;

use crate::{Queue, QueueError, keys, scripts};

/// What the portfolio's count says about one more conversation, and the
/// figures it was judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortfolioVerdict {
    pub room: ConversationRoom,
    /// The limit applied; `None` when none is known.
    pub limit: Option<u64>,
}

/// Whether one more conversation fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationRoom {
    /// A new user, counted now.
    Counted { users: u64 },
    /// The user was counted within the window already: no cost.
    Known { users: u64 },
    /// No room: hold the message until `frees_at_ms`.
    Held { users: u64, frees_at_ms: i64 },
}

impl ConversationRoom {
    /// Users counted in the window now.
    pub fn users(&self) -> u64 {
        match *self {
            Self::Counted { users } | Self::Known { users } | Self::Held { users, .. } => users,
        }
    }
}

/// How long a limit read from Meta stands without being read again.
const LIMIT_TTL: Duration = Duration::from_secs(3600);

impl Queue {
    /// Asks for room for a conversation with `recipient` under the
    /// portfolio's limit (`limit_override`, else the one Meta reported),
    /// holding new users once `hold_at` of it is used.
    pub async fn portfolio_room(
        &self,
        portfolio: &str,
        recipient: &str,
        now_ms: i64,
        window: Duration,
        limit_override: Option<u64>,
        hold_at: f64,
    ) -> Result<PortfolioVerdict, QueueError> {
        let answer: Vec<Value> = scripts::PortfolioAdmit {
            users_key: keys::portfolio_users(portfolio).into(),
            limit_key: keys::portfolio_limit(portfolio).into(),
            recipient: recipient.into(),
            now_ms: now_ms.into(),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).into(),
            limit_override: limit_override.unwrap_or(0).into(),
            hold_at: hold_at.to_string().into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        let number = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => *n,
            _ => 0,
        };
        let users = u64::try_from(number(answer.get(1))).unwrap_or(0);
        let limit = u64::try_from(number(answer.get(3))).ok().filter(|&l| l > 0);
        let room = match answer.first() {
            Some(Value::BulkString(b)) if b.as_slice() == b"held" => ConversationRoom::Held {
                users,
                frees_at_ms: number(answer.get(2)),
            },
            Some(Value::BulkString(b)) if b.as_slice() == b"known" => {
                ConversationRoom::Known { users }
            }
            _ => ConversationRoom::Counted { users },
        };
        Ok(PortfolioVerdict { room, limit })
    }

    /// Records the limit Meta reports (`None`: unlimited).
    pub async fn set_portfolio_limit(
        &self,
        portfolio: &str,
        limit: Option<u64>,
    ) -> Result<(), QueueError> {
        let key = keys::portfolio_limit(portfolio);
        let mut conn = self.conn.clone();
        match limit {
            Some(limit) => {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(limit)
                    .arg("PX")
                    .arg(u64::try_from(LIMIT_TTL.as_millis()).unwrap_or(u64::MAX))
                    .query_async(&mut conn)
                    .await?;
            }
            None => {
                let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
            }
        }
        Ok(())
    }
}
