//! Opening the connection: one multiplexed connection per process for every
//! command (pipelined by the driver, reconnected in the background). Nothing
//! blocks on it: a blocking read would stall every command queued behind it.
//!
//! `redis.url` chooses the kind: `redis://`, `rediss://` or `unix://` is one
//! server; `redis+cluster://[user:password@]host1:port1,host2:port2` (or
//! `rediss+cluster://` for TLS) is a Redis Cluster reached through any of
//! the nodes listed. Every key of a sender shares one hash slot, so every
//! script runs on the one master that owns the sender.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Cmd, Pipeline, ProtocolVersion, PushInfo, RedisFuture, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::{Queue, QueueError};

/// The URL scheme that names a Redis Cluster (plain TCP).
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The URL scheme that names a Redis Cluster over TLS.
pub const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

/// Prepares the connection without waiting for Redis: a process starts (and
/// answers `/healthz`) while Redis is down, and commands fail fast until it
/// is back.
pub fn connect(
    url: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
    record_ttl: Duration,
) -> Result<Queue, QueueError> {
    let conn = RedisConnection::open(url, connect_timeout, response_timeout)?;
    Ok(Queue {
        conn,
        record_ttl_ms: u64::try_from(record_ttl.as_millis()).unwrap_or(u64::MAX),
        recent_recipients_ms: crate::keys::RECENT_RECIPIENTS_MS,
    })
}

/// The one connection of a process: to a single Redis server, or to a
/// Redis Cluster. Cheap to clone: clones share the multiplexed connection.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server, reconnected in the background.
    Single(ConnectionManager),
    /// A cluster: commands go to the master owning their key's slot; the
    /// driver follows MOVED/ASK and reconnects to nodes that come back.
    Cluster(Cluster),
}

/// A cluster connection whose every request ends by its deadline. The
/// driver's own response timeout does not bound its retries and
/// reconnects: a request to a master that restarted could wait for ever
/// (redis-rs #1528), and the sender or the key watcher waiting on it would
/// stall without a word.
#[derive(Clone)]
pub struct Cluster {
    conn: ClusterConnection,
    deadline: Duration,
}

impl Cluster {
    /// The whole `pipeline` on the node `route` names.
    pub async fn route_pipeline(
        &self,
        pipeline: Pipeline,
        offset: usize,
        count: usize,
        route: SingleNodeRoutingInfo,
    ) -> redis::RedisResult<Vec<Value>> {
        let mut conn = self.conn.clone();
        within(
            self.deadline,
            conn.route_pipeline(pipeline, offset, count, route),
        )
        .await
    }

    /// `command` on the nodes `routing` names.
    pub async fn route_command(
        &self,
        command: Cmd,
        routing: RoutingInfo,
    ) -> redis::RedisResult<Value> {
        let mut conn = self.conn.clone();
        within(self.deadline, conn.route_command(command, routing)).await
    }
}

/// `request`'s answer, or a timeout error once `deadline` has passed.
async fn within<T>(
    deadline: Duration,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(deadline, request).await {
        Ok(answer) => answer,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the cluster within the deadline",
        ))),
    }
}

impl RedisConnection {
    /// Opens the connection `url` names (see the module docs), lazily.
    pub fn open(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, QueueError> {
        Self::open_with(url, connect_timeout, response_timeout, None)
    }

    /// Opens a connection of its own that speaks RESP3 and hands every
    /// push message from the server (invalidations, and a `Disconnection`
    /// the driver adds when a connection drops) to `pushes`: the key
    /// watcher's connection.
    pub fn open_for_pushes(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
        pushes: UnboundedSender<PushInfo>,
    ) -> Result<Self, QueueError> {
        Self::open_with(url, connect_timeout, response_timeout, Some(pushes))
    }

    fn open_with(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
        pushes: Option<UnboundedSender<PushInfo>>,
    ) -> Result<Self, QueueError> {
        if let Some(nodes) = cluster_nodes(url)? {
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .retries(3)
                .max_retry_wait(500);
            if let Some(pushes) = pushes {
                builder = builder
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(pushes);
            }
            let config = ClusterConfig::new()
                .set_connection_timeout(connect_timeout)
                .set_response_timeout(response_timeout);
            return Ok(Self::Cluster(Cluster {
                conn: builder
                    .build()?
                    .get_pending_async_connection_with_config(config),
                // The driver's own attempt, one reconnect and one retry.
                deadline: connect_timeout + 2 * response_timeout,
            }));
        }
        let mut client = redis::Client::open(url)?;
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        if let Some(pushes) = pushes {
            let info = client.get_connection_info().clone();
            let resp3 = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            client = redis::Client::open(info.set_redis_settings(resp3))?;
            config = config.set_push_sender(pushes);
        }
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        Self::Single(conn)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(cluster) => {
                let mut conn = cluster.conn.clone();
                let deadline = cluster.deadline;
                Box::pin(async move { within(deadline, conn.req_packed_command(cmd)).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => {
                let plain = !pipeline.is_transaction() && offset == 0 && count == pipeline.len();
                let mut conn = cluster.conn.clone();
                let deadline = cluster.deadline;
                match split_by_slot(pipeline).filter(|_| plain) {
                    Some(split) => Box::pin(within(deadline, split.run(conn))),
                    None => Box::pin(async move {
                        within(deadline, conn.req_packed_commands(pipeline, offset, count)).await
                    }),
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(cluster) => cluster.conn.get_db(),
        }
    }
}

/// The node URLs of a cluster URL, or `None` for a single-server URL.
fn cluster_nodes(url: &str) -> Result<Option<Vec<String>>, QueueError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        ("redis://", rest)
    } else if let Some(rest) = url.strip_prefix(CLUSTER_TLS_SCHEME) {
        ("rediss://", rest)
    } else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        QueueError::Redis(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "invalid cluster URL",
            why.to_owned(),
        )))
    };
    // Only database 0 exists on a cluster: an empty path or `/0`.
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !matches!(path, "" | "/" | "/0") {
        return Err(invalid("a cluster has only database 0"));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}{userinfo}{host}"))
        .collect();
    if nodes.is_empty() {
        return Err(invalid("no node listed"));
    }
    Ok(Some(nodes))
}

/// A non-transactional pipeline whose commands span several hash slots,
/// split into one pipeline per slot. The cluster driver sends a pipeline to
/// one node, so a pipeline across senders (a batch, lease renewals, a wamid
/// looked up under every sender) would fail with CROSSSLOT as it is.
struct SlotSplit {
    /// Per slot: the pipeline to run there and, for each of its commands
    /// after the leading keyless ones, the index of the command it answers.
    groups: Vec<(Pipeline, Vec<usize>)>,
    /// Indexes of keyless commands (`SCRIPT LOAD`): they lead every group's
    /// pipeline, so a script is loaded on each node before it is called
    /// there; the first group's reply is the answer.
    keyless: Vec<usize>,
    len: usize,
}

impl SlotSplit {
    async fn run(self, conn: ClusterConnection) -> redis::RedisResult<Vec<Value>> {
        let keyless = self.keyless.len();
        let replies = futures_util::future::try_join_all(self.groups.iter().map(|(pipe, _)| {
            let mut conn = conn.clone();
            async move { conn.req_packed_commands(pipe, 0, pipe.len()).await }
        }))
        .await?;
        let mut answers: Vec<Option<Value>> = vec![None; self.len];
        for (group, ((_, indexes), replies)) in self.groups.iter().zip(replies).enumerate() {
            if replies.len() != keyless + indexes.len() {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "cluster pipeline reply count",
                )));
            }
            let mut replies = replies.into_iter();
            for &index in &self.keyless {
                let reply = replies.next();
                if group == 0 {
                    answers[index] = reply;
                }
            }
            for (&index, reply) in indexes.iter().zip(replies) {
                answers[index] = Some(reply);
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| answer.unwrap_or(Value::Nil))
            .collect())
    }
}

/// `None` when the pipeline may go as it is: every keyed command in one slot
/// (the driver routes it there), or a command whose key this does not know
/// how to find (the driver decides, as without a split).
fn split_by_slot(pipeline: &Pipeline) -> Option<SlotSplit> {
    // In the order the slots first appear; a pipeline holds few.
    let mut by_slot: Vec<(Slot, Vec<usize>)> = Vec::new();
    let mut keyless = Vec::new();
    for (index, cmd) in pipeline.cmd_iter().enumerate() {
        match command_slot(cmd)? {
            Some(slot) => match by_slot.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, indexes)) => indexes.push(index),
                None => by_slot.push((slot, vec![index])),
            },
            None => keyless.push(index),
        }
    }
    if by_slot.len() < 2 {
        return None;
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let groups = by_slot
        .into_iter()
        .map(|(_, indexes)| {
            let mut pipe = redis::pipe();
            for &index in keyless.iter().chain(&indexes) {
                pipe.add_command(commands[index].clone());
            }
            (pipe, indexes)
        })
        .collect();
    Some(SlotSplit {
        groups,
        keyless,
        len: commands.len(),
    })
}

/// The slot a command's key hashes to: `Some(None)` for a keyless command
/// that may run on any node (`SCRIPT LOAD`, `PING`, `CLIENT TRACKING`),
/// `None` for one this
/// does not know.
fn command_slot(cmd: &Cmd) -> Option<Option<Slot>> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()??.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"SCRIPT" | b"PING" | b"CLIENT" => return Some(None),
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let _script = args.next()??;
            let numkeys: usize = std::str::from_utf8(args.next()??).ok()?.parse().ok()?;
            if numkeys == 0 {
                return None;
            }
            args.next()??
        }
        // Commands with several keys, or the key elsewhere: left to the driver.
        b"MULTI" | b"EXEC" | b"XREAD" | b"XREADGROUP" | b"MGET" | b"MSET" | b"DEL" | b"UNLINK"
        | b"EXISTS" | b"TOUCH" | b"WATCH" | b"BLMPOP" | b"BZMPOP" | b"LMPOP" | b"ZMPOP"
        | b"XGROUP" | b"XINFO" | b"OBJECT" | b"MEMORY" | b"BITOP" | b"SORT" | b"SORT_RO"
        | b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" | b"ZUNION" | b"ZINTER" | b"ZDIFF"
        | b"SUNIONSTORE" | b"SINTERSTORE" | b"SDIFFSTORE" | b"SUNION" | b"SINTER" | b"SDIFF"
        | b"RENAME" | b"RENAMENX" | b"COPY" | b"SMOVE" | b"LMOVE" | b"BLMOVE" | b"RPOPLPUSH"
        | b"BRPOPLPUSH" | b"GEORADIUS" | b"GEOSEARCHSTORE" | b"PFCOUNT" | b"PFMERGE"
        | b"MSETNX" | b"SINTERCARD" | b"ZINTERCARD" | b"ZRANGESTORE" | b"BLPOP" | b"BRPOP"
        | b"BZPOPMIN" | b"BZPOPMAX" => return None,
        _ => args.next()??,
    };
    Some(Some(Slot::for_key(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_list_their_nodes() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379").unwrap(), None);
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7000, 127.0.0.1:7001/").unwrap(),
            Some(vec![
                "redis://127.0.0.1:7000".to_owned(),
                "redis://127.0.0.1:7001".to_owned()
            ])
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://user:pw@a:7000,b:7001").unwrap(),
            Some(vec![
                "rediss://user:pw@a:7000".to_owned(),
                "rediss://user:pw@b:7001".to_owned()
            ])
        );
        assert!(cluster_nodes("redis+cluster://").is_err());
        assert!(cluster_nodes("redis+cluster://a:7000/1").is_err());
    }

    #[test]
    fn commands_are_placed_by_their_first_key() {
        let slot = |key: &str| Some(Some(Slot::for_key(key)));
        let mut get = redis::cmd("GET");
        get.arg("gw:{1}:lease");
        assert_eq!(command_slot(&get), slot("{1}"));
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg("abc")
            .arg(2)
            .arg("gw:{2}:queue")
            .arg("gw:{2}:x");
        assert_eq!(command_slot(&evalsha), slot("{2}"));
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg("return 1");
        assert_eq!(command_slot(&load), Some(None));
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("s")
            .arg(">");
        assert_eq!(command_slot(&read), None);
    }

    #[test]
    fn a_pipeline_across_senders_is_split_by_slot() {
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg("return 1");
        for pnid in ["1000000000", "1000000001", "1000000000"] {
            pipe.cmd("GET").arg(crate::keys::lease(pnid));
        }
        let split = split_by_slot(&pipe).expect("two slots");
        assert_eq!(split.keyless, vec![0]);
        assert_eq!(split.len, 4);
        let indexes: Vec<Vec<usize>> = split.groups.iter().map(|g| g.1.clone()).collect();
        assert_eq!(indexes, vec![vec![1, 3], vec![2]]);
        for (pipe, indexes) in &split.groups {
            assert_eq!(pipe.len(), 1 + indexes.len());
        }

        let mut one_sender = redis::pipe();
        one_sender
            .cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1")
            .cmd("GET")
            .arg(crate::keys::lease("1"))
            .cmd("GET")
            .arg(crate::keys::paused("1"));
        assert!(split_by_slot(&one_sender).is_none());
    }
}
