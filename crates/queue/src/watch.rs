//! Wake-ups without polling. A worker that has nothing to read asks Redis to
//! tell it when a key changes, instead of asking Redis every few
//! milliseconds whether it did: Redis's client-side caching (`CLIENT
//! TRACKING`) sends an `invalidate` push for a key the next time any client
//! modifies it (`XADD`, `ZADD`, `SET`, `DEL`, ...) after this connection
//! read it, once. The watcher keeps a RESP3 connection of its own for that;
//! arming a key is one read of it there (`TYPE`, or `GET` when the caller
//! wants the value), so an idle sender costs Redis nothing at all.
//!
//! Guarantee: once [`KeyWatcher::arm`] returns, any later change to one of
//! its keys wakes the given [`Notify`] at least once. Wake-ups may be
//! spurious (a key changes when the worker itself writes it), so a woken
//! task looks for itself. When the watcher cannot be sure that it would
//! hear of a change, it wakes every waiter, and each arms again: when its
//! connection dropped, or when a periodic check finds that a connection a
//! key was armed on is no longer the one the driver uses (each arming
//! reads its connection's `CLIENT ID`: a cluster driver reconnecting to a
//! restarted master can run a request on a connection it then drops
//! without a word), or tracking off.
//!
//! The connection is opened lazily and reconnects by itself; `CLIENT
//! TRACKING ON` leads every arming pipeline, so a new connection is
//! tracking again with its first use. A worker's own writes wake it too
//! (a sent message's `XDEL`): `NOLOOP` would spare those wake-ups, but a
//! key the connection changes itself would then stop being tracked
//! without a word, so it is not used. Instead a caller arms a stream only
//! when it waits for new entries (it read the stream to its end), not
//! while it is still reading and deleting what it read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{QueueError, RedisConnection};

/// How often the watcher checks that its connections still track keys.
/// Redis forgets tracking when a connection closes; the driver reports a
/// drop as a push, and this check catches a connection it replaced or
/// dropped without one (keys armed on a `CLIENT ID` the driver no longer
/// uses, or tracking off).
const TRACKING_CHECK: Duration = Duration::from_secs(2);

/// Watches Redis keys for changes. Cheap to clone.
#[derive(Clone)]
pub struct KeyWatcher {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConnection,
    /// Armed keys and whom each wakes. Weak: a waiter that went away is
    /// simply not woken.
    armed: Mutex<Armed>,
}

/// What is armed: the keys and whom each wakes, and the connections
/// (`CLIENT ID`s) they were armed on since the last wake-up of everyone.
#[derive(Default)]
struct Armed {
    keys: HashMap<String, Vec<Weak<Notify>>>,
    on: HashSet<i64>,
}

impl KeyWatcher {
    /// Opens the watcher's connection (lazily) and starts the task that
    /// turns Redis's pushes into wake-ups and the periodic tracking check.
    /// Both end when the last clone of the watcher is dropped.
    pub fn open(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, QueueError> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let conn =
            RedisConnection::open_for_pushes(url, connect_timeout, response_timeout, pushes)?;
        let inner = Arc::new(Inner {
            conn,
            armed: Mutex::new(Armed::default()),
        });
        tokio::spawn(handle_pushes(Arc::downgrade(&inner), received));
        tokio::spawn(check_tracking(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Arms `keys`: `notify` is woken when any of them changes from now on.
    pub async fn arm(&self, keys: &[String], notify: &Arc<Notify>) -> Result<(), QueueError> {
        self.arm_then(keys, notify, Vec::new()).await.map(|_| ())
    }

    /// Arms `keys`, then runs `then` on the same connection in the same
    /// round trip, and returns their replies: a read that follows the arming
    /// this way sees every change the wake-up would not report. On a
    /// cluster, `then` must be about keys in the slot of `keys[0]`.
    pub async fn arm_then(
        &self,
        keys: &[String],
        notify: &Arc<Notify>,
        then: Vec<redis::Cmd>,
    ) -> Result<Vec<Value>, QueueError> {
        let mut replies = self.read_and_arm("TYPE", keys, notify, then).await?;
        Ok(replies.split_off(keys.len().min(replies.len())))
    }

    /// Reads string `keys` and arms them in the same step: the values now,
    /// and a wake-up for any change after they were read.
    pub async fn get_and_arm(
        &self,
        keys: &[String],
        notify: &Arc<Notify>,
    ) -> Result<Vec<Option<String>>, QueueError> {
        self.read_and_arm("GET", keys, notify, Vec::new())
            .await?
            .into_iter()
            .map(|value| {
                redis::from_redis_value::<Option<String>>(value)
                    .map_err(|e| QueueError::Protocol(e.to_string()))
            })
            .collect()
    }

    /// Which of `keys` exist, and arms them in the same step: a wake-up
    /// for any change after they were read.
    pub async fn exist_and_arm(
        &self,
        keys: &[String],
        notify: &Arc<Notify>,
    ) -> Result<Vec<bool>, QueueError> {
        Ok(self
            .read_and_arm("TYPE", keys, notify, Vec::new())
            .await?
            .into_iter()
            .map(|value| match value {
                Value::SimpleString(kind) => kind != "none",
                Value::BulkString(kind) => kind != b"none",
                _ => false,
            })
            .collect())
    }

    /// Reads `keys` with `read` (arming them), then runs `then`: the
    /// replies of both, in order. Registers the waiter before the read goes
    /// out, so an invalidation that follows the read at once finds it.
    async fn read_and_arm(
        &self,
        read: &str,
        keys: &[String],
        notify: &Arc<Notify>,
        then: Vec<redis::Cmd>,
    ) -> Result<Vec<Value>, QueueError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.register(keys, notify);
        match &self.inner.conn {
            RedisConnection::Single(_) => {
                let mut pipe = tracking_pipeline();
                for key in keys {
                    pipe.cmd(read).arg(key);
                }
                for command in then {
                    pipe.add_command(command);
                }
                let mut conn = self.inner.conn.clone();
                let mut replies: Vec<Value> = pipe.query_async(&mut conn).await?;
                self.inner.armed_on(&replies)?;
                Ok(replies.split_off(TRACKING_REPLIES.min(replies.len())))
            }
            RedisConnection::Cluster(conn) => {
                // The driver would route `CLIENT TRACKING ON` by its first
                // argument as if it were a key: each slot's keys go to
                // their master explicitly, the tracking command first.
                let mut by_slot: Vec<(Slot, Vec<usize>)> = Vec::new();
                for (index, key) in keys.iter().enumerate() {
                    let slot = Slot::for_key(key.as_bytes());
                    match by_slot.iter_mut().find(|(s, _)| *s == slot) {
                        Some((_, indexes)) => indexes.push(index),
                        None => by_slot.push((slot, vec![index])),
                    }
                }
                let mut values = vec![Value::Nil; keys.len()];
                let mut then = Some(then);
                let mut then_replies = Vec::new();
                for (slot, indexes) in by_slot {
                    let mut pipe = tracking_pipeline();
                    for &index in &indexes {
                        pipe.cmd(read).arg(&keys[index]);
                    }
                    // The caller's commands go with the first key's slot.
                    let extra = then.take().unwrap_or_default();
                    let extra_count = extra.len();
                    for command in extra {
                        pipe.add_command(command);
                    }
                    let count = pipe.len();
                    let route = SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
                        slot,
                        SlotAddr::Master,
                    ));
                    let mut replies = conn.route_pipeline(pipe, 0, count, route).await?;
                    self.inner.armed_on(&replies)?;
                    then_replies
                        .append(&mut replies.split_off(replies.len().saturating_sub(extra_count)));
                    for (index, value) in indexes
                        .into_iter()
                        .zip(replies.into_iter().skip(TRACKING_REPLIES))
                    {
                        values[index] = value;
                    }
                }
                values.append(&mut then_replies);
                Ok(values)
            }
        }
    }
}

/// Replies of the commands that lead every arming: `CLIENT TRACKING ON`
/// and `CLIENT ID`.
const TRACKING_REPLIES: usize = 2;

fn tracking_pipeline() -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.add_command(tracking_on());
    pipe.cmd("CLIENT").arg("ID");
    pipe
}

/// Tracking of the keys this connection reads.
fn tracking_on() -> redis::Cmd {
    redis::cmd("CLIENT").arg("TRACKING").arg("ON").to_owned()
}

impl Inner {
    fn armed(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes the connection an arming pipeline ran on (its `CLIENT ID`
    /// reply, after `CLIENT TRACKING ON`'s).
    fn armed_on(&self, replies: &[Value]) -> Result<(), QueueError> {
        match replies.get(1) {
            Some(Value::Int(id)) => {
                self.armed().on.insert(*id);
                Ok(())
            }
            other => Err(QueueError::Protocol(format!(
                "CLIENT ID answered {other:?}"
            ))),
        }
    }

    fn register(&self, keys: &[String], notify: &Arc<Notify>) {
        let mut armed = self.armed();
        for key in keys {
            let waiters = armed.keys.entry(key.clone()).or_default();
            waiters.retain(|w| w.strong_count() > 0);
            if !waiters
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(notify)))
            {
                waiters.push(Arc::downgrade(notify));
            }
        }
    }

    /// Redis forgets a key once it reported it: so does the watcher.
    fn changed(&self, key: &[u8]) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let waiters = self.armed().keys.remove(key).unwrap_or_default();
        for notify in waiters.iter().filter_map(Weak::upgrade) {
            notify.notify_one();
        }
    }

    fn wake_all(&self) {
        let all = std::mem::take(&mut *self.armed());
        for notify in all.keys.values().flatten().filter_map(Weak::upgrade) {
            notify.notify_one();
        }
    }
}

async fn handle_pushes(inner: Weak<Inner>, mut received: UnboundedReceiver<PushInfo>) {
    while let Some(push) = received.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match push.kind {
            PushKind::Invalidate => {
                for value in push.data {
                    match value {
                        Value::Array(keys) | Value::Set(keys) => {
                            for key in keys {
                                if let Value::BulkString(key) = key {
                                    inner.changed(&key);
                                }
                            }
                        }
                        // A null list: Redis flushed its tracking table.
                        _ => inner.wake_all(),
                    }
                }
            }
            PushKind::Disconnection => {
                tracing::debug!("key watcher connection dropped; waking every waiter");
                inner.wake_all();
            }
            _ => {}
        }
    }
}

async fn check_tracking(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(TRACKING_CHECK).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.armed().keys.is_empty() {
            continue;
        }
        let armed_on = inner.armed().on.clone();
        let in_use = connections(&inner.conn).await;
        let dropped = in_use.is_none_or(|in_use| !armed_on.is_subset(&in_use));
        if dropped || !still_tracking(&inner.conn).await {
            tracing::debug!(
                dropped,
                "key tracking may have been lost; waking every waiter"
            );
            inner.wake_all();
        }
    }
}

/// The server-side ids (`CLIENT ID`) of the connections the driver uses
/// now, one per node: keys armed on any other connection will never be
/// reported.
async fn connections(conn: &RedisConnection) -> Option<HashSet<i64>> {
    let id = redis::cmd("CLIENT").arg("ID").to_owned();
    match conn {
        RedisConnection::Single(conn) => {
            let id: i64 = id.query_async(&mut conn.clone()).await.ok()?;
            Some(HashSet::from([id]))
        }
        RedisConnection::Cluster(conn) => {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let Value::Map(nodes) = conn.route_command(id, all).await.ok()? else {
                return None;
            };
            nodes
                .into_iter()
                .map(|(_, id)| match id {
                    Value::Int(id) => Some(id),
                    _ => None,
                })
                .collect()
        }
    }
}

/// Whether every connection the watcher uses still tracks keys. On a
/// cluster, a master the watcher never armed a key on reports tracking
/// off: it is switched on there, so that the next check passes.
async fn still_tracking(conn: &RedisConnection) -> bool {
    let info = redis::cmd("CLIENT").arg("TRACKINGINFO").to_owned();
    match conn {
        RedisConnection::Single(conn) => {
            let reply: redis::RedisResult<Value> = info.query_async(&mut conn.clone()).await;
            reply.is_ok_and(|info| flags_say_on(&info))
        }
        RedisConnection::Cluster(conn) => {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let on = match conn.route_command(info, all.clone()).await {
                Ok(Value::Map(nodes)) => nodes.iter().all(|(_, info)| flags_say_on(info)),
                _ => false,
            };
            if !on {
                let _ = conn.route_command(tracking_on(), all).await;
            }
            on
        }
    }
}

/// `CLIENT TRACKINGINFO`'s `flags` include `on`.
fn flags_say_on(info: &Value) -> bool {
    let Value::Map(fields) = info else {
        return false;
    };
    fields.iter().any(|(name, flags)| {
        text(name).is_some_and(|n| n == "flags")
            && match flags {
                Value::Array(flags) | Value::Set(flags) => {
                    flags.iter().any(|f| text(f).is_some_and(|f| f == "on"))
                }
                _ => false,
            }
    })
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn tracking_info_is_read_from_its_flags() {
        let on = Value::Map(vec![
            (
                bulk("flags"),
                Value::Set(vec![Value::SimpleString("on".into())]),
            ),
            (bulk("redirect"), Value::Int(-1)),
        ]);
        let off = Value::Map(vec![(
            bulk("flags"),
            Value::Set(vec![Value::SimpleString("off".into())]),
        )]);
        assert!(flags_say_on(&on));
        assert!(!flags_say_on(&off));
        assert!(!flags_say_on(&Value::Nil));
    }
}
