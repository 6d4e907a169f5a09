//! What can go wrong talking to Redis.

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis did not answer, refused, or timed out: the caller may retry later.
    #[error("redis is unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something this code did not write.
    #[error("unexpected data in redis: {0}")]
    Protocol(String),
}
