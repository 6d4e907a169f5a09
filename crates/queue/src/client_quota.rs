//! Clients' quotas: at most `rate_per_second` messages in any second and
//! `per_day` in a UTC day, all of a client's senders together, counted in
//! Redis so that every api process keeps the same figures. One script call
//! per request (a batch takes its items at once); the rate is kept with
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
    /// Takes up to `wanted` messages from `client`'s quotas; `now_ms` names
    /// the UTC day.
    pub async fn take_client_quota(
        &self,
        client: &str,
        limits: QuotaLimits,
        wanted: u64,
        now_ms: i64,
    ) -> Result<QuotaGrant, QueueError> {
        if limits.is_unlimited() || wanted == 0 {
            return Ok(QuotaGrant {
                granted: wanted,
                exceeded: None,
            });
        }
        let day = now_ms.div_euclid(DAY_MS);
        let ms_to_day_end = (day + 1) * DAY_MS - now_ms;
        let answer: Vec<Value> = scripts::ClientQuota {
            day_key: keys::client_day(client, day).into(),
            rate_key: keys::client_second(client).into(),
            sequence_key: keys::client_sequence(client).into(),
            wanted: wanted.into(),
            per_day: limits.per_day.unwrap_or(0).into(),
            per_second: limits.per_second.unwrap_or(0).into(),
            ms_to_day_end: ms_to_day_end.into(),
            // The day's count is kept into the next day, for `gateway stats`.
            day_key_ttl_ms: (ms_to_day_end + DAY_MS).into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
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
