//! Clients' quotas: at most `rate_per_second` messages in any second and
//! `per_day` in a UTC day, all of a client's senders together and through
//! one sender of it, counted in Redis so that every api process keeps the
//! same figures. One script call takes from every scope that applies at
//! once (all keys of a client share its hash tag); the rate is kept with
//! Redis's clock, not a host's.

use std::time::Duration;

use redis::Value;

use crate::{Queue, QueueError, keys, scripts};

/// A client's quotas; `None` for a quota it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaLimits {
    pub per_second: Option<u32>,
    pub per_day: Option<u64>,
}

impl QuotaLimits {
    pub fn is_unlimited(&self) -> bool {
        self.per_second.is_none() && self.per_day.is_none()
    }
}

/// What a quota counts: all of a client's senders, or one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope<'a> {
    Client,
    /// By phone_number_id.
    Sender(&'a str),
}

/// Which quota stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    Rate,
    Daily,
}

impl QuotaExceeded {
    /// The error code `/send` answers.
    pub fn code(self) -> &'static str {
        match self {
            Self::Rate => "client_rate_limited",
            Self::Daily => "client_daily_quota",
        }
    }
}

/// What a request may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaGrant {
    /// How many of the messages asked for may go (the first ones).
    pub granted: u64,
    /// Why not all of them, and when there is room again.
    pub exceeded: Option<(QuotaExceeded, Duration)>,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Queue {
    /// Takes up to `wanted` messages from `client`'s quotas in `scopes`
    /// (those without limits are left out); `now_ms` names the UTC day.
    pub async fn take_client_quota(
        &self,
        client: &str,
        scopes: &[(QuotaScope<'_>, QuotaLimits)],
        wanted: u64,
        now_ms: i64,
    ) -> Result<QuotaGrant, QueueError> {
        let limited: Vec<_> = scopes.iter().filter(|(_, l)| !l.is_unlimited()).collect();
        if limited.is_empty() || wanted == 0 {
            return Ok(QuotaGrant {
                granted: wanted,
                exceeded: None,
            });
        }
        let day = now_ms.div_euclid(DAY_MS);
        let ms_to_day_end = (day + 1) * DAY_MS - now_ms;
        let mut invocation = scripts::ClientQuota {
            wanted: wanted.into(),
            ms_to_day_end: ms_to_day_end.into(),
            // The day's count is kept into the next day, to look at.
            day_key_ttl_ms: (ms_to_day_end + DAY_MS).into(),
        }
        .invocation();
        for (scope, limits) in limited {
            let sender = match scope {
                QuotaScope::Client => None,
                QuotaScope::Sender(pnid) => Some(*pnid),
            };
            invocation
                .key(keys::client_day(client, sender, day))
                .key(keys::client_second(client, sender))
                .key(keys::client_sequence(client, sender))
                .arg(limits.per_day.unwrap_or(0))
                .arg(limits.per_second.unwrap_or(0));
        }
        let answer: Vec<Value> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let number = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let granted = number(answer.first()).min(wanted);
        let reason = match answer.get(1) {
            Some(Value::BulkString(b)) => b.as_slice(),
            _ => b"",
        };
        let exceeded = match reason {
            b"client_rate_limited" => Some(QuotaExceeded::Rate),
            b"client_daily_quota" => Some(QuotaExceeded::Daily),
            _ => None,
        }
        .map(|quota| (quota, Duration::from_millis(number(answer.get(2)))));
        Ok(QuotaGrant { granted, exceeded })
    }
}
