//! A private `redis-server` for one test: its own port and directory, so
//! tests run in parallel and may stop or restart it without touching anyone
//! else's Redis.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts a server with extra arguments (e.g. `--appendonly yes`).
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut server = Self {
            port: 0,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        // A free port may be taken between probing and binding: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "could not start redis-server (is it installed? run scripts/ensure-redis-server.sh)"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The queue on this server, as a test reads and writes it directly.
    pub fn queue(&self) -> gateway_queue::Queue {
        queue_at(&self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it answers nothing until
    /// [`resume`](Self::resume), as a server stuck on a slow disk would.
    pub fn suspend(&self) {
        signal(self.child.as_ref(), "-STOP");
    }

    /// Lets a suspended server go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref(), "-CONT");
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns redis-server and waits until it answers; false if it exits.
    fn spawn(&mut self) -> bool {
        self.child = spawn_answering(self.port, self.dir.path(), &self.args);
        self.child.is_some()
    }
}

/// Spawns `redis-server` on `port` (loopback) in `dir` with `args`, and
/// waits until it answers PING; `None` if it exits or stays silent for 10 s.
pub(crate) fn spawn_answering<S: AsRef<std::ffi::OsStr>>(
    port: u16,
    dir: &Path,
    args: &[S],
) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if ping(port) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// Sends `signal` (`-STOP`, `-CONT`) to a child process started here.
/// The queue at `url`: answers within 2 s, records kept an hour.
pub(crate) fn queue_at(url: &str) -> gateway_queue::Queue {
    gateway_queue::connect(
        url,
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3_600),
    )
    .expect("a valid Redis URL")
}

pub(crate) fn signal(child: Option<&Child>, signal: &str) {
    if let Some(child) = child {
        let _ = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status();
    }
}
