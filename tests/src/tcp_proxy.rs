//! Loopback TCP proxy for integration tests that need Redis to *execute* a
//! command whose reply the client never sees.
//!
//! Put a [`TcpProxy`] between a Redis client and a real `redis-server`. All
//! traffic passes through untouched until [`TcpProxy::lose_next_reply_to`] is
//! armed. The next client chunk that matches dooms its connection: the chunk is
//! still forwarded to Redis, and as soon as Redis's reply bytes arrive the proxy
//! discards them and closes that client connection (and its upstream). This is
//! "Redis ran XREADGROUP but the worker never saw the reply".
//!
//! Guarantee: the doomed request reached Redis before the client connection
//! was cut, the cut happens on the first server→client data after it (never
//! earlier), and no byte of that data reaches the client. The trigger is
//! one-shot; other connections and every later connection are unaffected.
//!
//! Limitations (fine for tests, by design kept simple):
//! - Matching is on the raw bytes of one read chunk, not on parsed RESP: the
//!   command name must appear as a RESP bulk string (`$10\r\nXREADGROUP\r\n`,
//!   ASCII case-insensitive) and the key substring anywhere in the same chunk
//!   (case-sensitive). A request split across reads is not matched; a short key
//!   substring may match other arguments.
//! - "Reply" means the next server→client bytes. If the client still has
//!   earlier requests in flight on that connection, an earlier reply may be the
//!   one that trips the cut. Commands pipelined with or after the doomed one
//!   on that connection lose their replies too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Needles of the armed trigger: RESP-encoded command name and key substring.
struct Trigger {
    command: Vec<u8>,
    key: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    armed: Mutex<Option<Trigger>>,
    lost: AtomicUsize,
}

impl Shared {
    /// Disarms and returns true if `chunk` matches the armed trigger.
    fn take_if_matches(&self, chunk: &[u8]) -> bool {
        // A poisoned lock only means a test thread panicked; the data is fine.
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let hit = armed
            .as_ref()
            .is_some_and(|t| contains(chunk, &t.command, true) && contains(chunk, &t.key, false));
        if hit {
            *armed = None;
        }
        hit
    }
}

/// A loopback proxy to one upstream address; dropping it stops everything.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl TcpProxy {
    /// Binds 127.0.0.1 on an ephemeral port and starts accepting connections,
    /// each relayed to a fresh connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy listener on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy listener address");
        let shared = Arc::new(Shared::default());
        let accept_task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        TcpProxy {
            addr,
            shared,
            accept_task,
        }
    }

    /// Where clients should connect instead of Redis.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` for this proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Arms a one-shot trigger: the next client chunk containing `command` (as a
    /// RESP bulk string, case-insensitive) and `key_substring` dooms its
    /// connection. Re-arming replaces a trigger that has not fired yet.
    pub fn lose_next_reply_to(&self, command: &str, key_substring: &str) {
        let mut needle = format!("${}\r\n", command.len()).into_bytes();
        needle.extend_from_slice(command.as_bytes());
        needle.extend_from_slice(b"\r\n");
        let trigger = Trigger {
            command: needle,
            key: key_substring.as_bytes().to_vec(),
        };
        *self.shared.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(trigger);
    }

    /// How many replies were swallowed (connections cut) so far.
    pub fn replies_lost(&self) -> usize {
        self.shared.lost.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connection tasks, so aborting it
        // drops the set, which aborts every relay and closes their sockets.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        // Reap finished relays so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((client, _)) => {
                conns.spawn(relay(client, upstream, shared.clone()));
            }
            // E.g. out of file descriptors: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Relays one client connection. Errors just end it: the client sees a closed
/// connection, which is what a test of a broken link expects anyway.
async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let doomed = AtomicBool::new(false);

    let upward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_rd.read(&mut buf).await?;
            if n == 0 {
                // Client half-closed: pass it on, replies may still come back.
                return server_wr.shutdown().await;
            }
            // Mark doomed *before* forwarding, so the reply cannot outrun it.
            if !doomed.load(Ordering::SeqCst) && shared.take_if_matches(&buf[..n]) {
                doomed.store(true, Ordering::SeqCst);
            }
            server_wr.write_all(&buf[..n]).await?;
        }
    };
    let downward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = server_rd.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            if doomed.load(Ordering::SeqCst) {
                // Redis answered, so it ran the command: drop the reply and cut.
                shared.lost.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            client_wr.write_all(&buf[..n]).await?;
        }
    };
    tokio::pin!(upward, downward);

    let _: std::io::Result<()> = tokio::select! {
        up = &mut upward => match up {
            Ok(()) => (&mut downward).await,
            Err(e) => Err(e),
        },
        down = &mut downward => down,
    };
    // Returning drops all four halves: both sockets close in both directions.
}

/// Byte-substring search, optionally ASCII case-insensitive.
fn contains(haystack: &[u8], needle: &[u8], ignore_case: bool) -> bool {
    needle.is_empty()
        || haystack.windows(needle.len()).any(|w| {
            if ignore_case {
                w.eq_ignore_ascii_case(needle)
            } else {
                w == needle
            }
        })
}
