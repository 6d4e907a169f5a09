//! A private three-master Redis Cluster for one test: three `redis-server`
//! processes with cluster mode and AOF on free ports, each in its own
//! directory, joined by `redis-cli --cluster create`. A master can be
//! restarted on its port and directory (it keeps its node id, slots and data
//! from `nodes-<port>.conf` and the AOF). Every process is stopped on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{queue_at, spawn_answering};

pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts three masters (no replicas) and waits for `cluster_state:ok`
    /// on each.
    pub fn start() -> Self {
        for _ in 0..3 {
            if let Some(cluster) = Self::try_start() {
                return cluster;
            }
        }
        panic!(
            "could not start a Redis Cluster (are redis-server and redis-cli installed? \
             run scripts/ensure-redis-server.sh)"
        );
    }

    fn try_start() -> Option<Self> {
        let mut cluster = Self { nodes: Vec::new() };
        let ports = free_ports(3);
        for port in ports {
            let mut node = ClusterNode {
                port,
                dir: tempfile::tempdir().expect("temporary directory"),
                child: None,
            };
            if !node.spawn() {
                return None;
            }
            cluster.nodes.push(node);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            return None;
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_until_ok(i);
        }
        Some(cluster)
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, as
    /// `redis.url` takes it.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The queue on this cluster, as a test reads and writes it directly.
    pub fn queue(&self) -> gateway_queue::Queue {
        queue_at(&self.url())
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The index of the master that owns `key`'s slot.
    pub fn owner_of(&self, key: &str) -> usize {
        self.nodes
            .iter()
            .position(|node| {
                // A master answers for its own slots and MOVED for the others.
                redis_cli(node.port, &["EXISTS", key]).is_some_and(|out| !out.contains("MOVED"))
            })
            .unwrap_or_else(|| panic!("no master answers for {key}"))
    }

    /// Stops master `index` with SIGTERM (it writes its AOF and exits) and
    /// waits until it has exited.
    pub fn stop(&mut self, index: usize) {
        self.nodes[index].terminate();
    }

    /// Starts master `index` again on its port and directory and waits
    /// until the cluster is whole again (`cluster_state:ok` on every node).
    pub fn start_again(&mut self, index: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.nodes[index].spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.nodes[index].port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for i in 0..self.nodes.len() {
            self.wait_until_ok(i);
        }
    }

    fn wait_until_ok(&self, index: usize) {
        let port = self.nodes[index].port;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if redis_cli(port, &["CLUSTER", "INFO"])
                .is_some_and(|info| info.contains("cluster_state:ok"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster_state:ok not reached on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl ClusterNode {
    /// Spawns the server and waits until it answers; false if it exits.
    fn spawn(&mut self) -> bool {
        let nodes_file = format!("nodes-{}.conf", self.port);
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &nodes_file,
            // As the README asks: the other masters' slots stay served while
            // one master is down.
            "--cluster-require-full-coverage",
            "no",
            "--appendonly",
            "yes",
            "--save",
            "",
        ];
        self.child = spawn_answering(self.port, self.dir.path(), &args);
        self.child.is_some()
    }

    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs one `redis-cli` command against a node (no redirects followed);
/// its output, or `None` if it could not run or failed.
fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

/// `count` distinct free ports whose cluster bus ports (port + 10000) are
/// free too.
fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("addr").port();
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}
