//! Opening the connection: one multiplexed connection per process for every
//! command (pipelined by the driver, reconnected in the background). Nothing
//! blocks on it: a blocking read would stall every command queued behind it.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

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
    let conn = ConnectionManager::new_lazy_with_config(client, config)?;
    Ok(Queue {
        conn,
        record_ttl_ms: u64::try_from(record_ttl.as_millis()).unwrap_or(u64::MAX),
    })
}
