//! A number's quality rating as a worker last read it from Meta (its poll,
//! or the `phone_number_quality_update` webhook, which any worker may
//! handle), kept in Redis so that the sender's owner, whichever worker it
//! is and however it took the sender, acts on it: the owner reads it with
//! the lease and the pause flag, and Redis tells it when it changes (key
//! tracking, see the worker's dispatcher). One key per configured sender,
//! like the pause flag, and none for a GREEN number: a fleet of healthy
//! numbers costs nothing, also at its first poll.

use crate::{Queue, QueueError, keys};

impl Queue {
    /// The stored rating (`YELLOW`, `RED`, `UNKNOWN`); `None`: GREEN, or
    /// never rated.
    pub async fn quality(&self, phone_number_id: &str) -> Result<Option<String>, QueueError> {
        Ok(redis::cmd("GET")
            .arg(keys::quality(phone_number_id))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Stores a rating (`None`: GREEN, which removes the key).
    pub async fn set_quality(
        &self,
        phone_number_id: &str,
        rating: Option<&str>,
    ) -> Result<(), QueueError> {
        let key = keys::quality(phone_number_id);
        let command = match rating {
            Some(rating) => redis::cmd("SET").arg(&key).arg(rating).to_owned(),
            None => redis::cmd("DEL").arg(&key).to_owned(),
        };
        let _: () = command.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}
