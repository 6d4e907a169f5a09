//! Opening the connection: one multiplexed connection per process for
//! commands (pipelined by the driver, reconnected in the background), plus
//! dedicated connections for blocking reads, which would otherwise stall
//! every command queued behind them.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::{Queue, QueueError};

/// Prepares the connection without waiting for Redis: a process starts (and
/// answers `/healthz`) while Redis is down, and commands fail fast until it
/// is back.
pub fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
    record_ttl: Duration,
) -> Result<Queue, QueueError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
    Ok(Queue {
        conn,
        client,
        record_ttl_ms: u64::try_from(record_ttl.as_millis()).unwrap_or(u64::MAX),
        response_timeout,
    })
}

impl Queue {
    /// A connection of its own for `XREADGROUP ... BLOCK`, answering within
    /// `block` plus the usual response timeout.
    pub async fn blocking_connection(
        &self,
        block: Duration,
    ) -> Result<MultiplexedConnection, QueueError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.response_timeout))
            .set_response_timeout(Some(block + self.response_timeout));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}
