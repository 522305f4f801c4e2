//! A private Redis Cluster on loopback for the tests and the benchmark:
//! real `redis-server` nodes in cluster mode, joined by `redis-cli
//! --cluster create`, with helpers to move slots (`redis-cli --cluster
//! reshard`) and to kill a primary so that its replica takes over.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RedisServer;

/// How long a silent node counts as alive; short, so that a failover in a
/// test takes a second or two rather than Redis's default 15.
const NODE_TIMEOUT_MS: u32 = 1000;

/// A cluster of `primaries` primaries with `replicas` replicas each, every
/// node stopped when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Nodes that keep nothing on disk.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        Self::start_with(primaries, replicas, None)
    }

    /// Nodes with an append-only file flushed as `appendfsync` says.
    pub fn start_durable(primaries: usize, replicas: usize, appendfsync: &'static str) -> Self {
        Self::start_with(primaries, replicas, Some(appendfsync))
    }

    fn start_with(primaries: usize, replicas: usize, fsync: Option<&'static str>) -> Self {
        let count = primaries * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| RedisServer::start_node(fsync, Some(NODE_TIMEOUT_MS)))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli must be installed (see README)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:<port>` of the first node: the address an app is
    /// given.
    pub fn seed_url(&self) -> String {
        self.nodes[0].url()
    }

    /// The nodes still running.
    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// Waits until every running node says the cluster is `ok`, with every
    /// slot served, all of them agree on who serves what, and every replica
    /// is in step with its primary.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let layouts: Vec<Option<String>> = self
                .live()
                .map(|node| {
                    let mut conn = node.client().get_connection().ok()?;
                    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()?;
                    let replication: String = redis::cmd("INFO")
                        .arg("replication")
                        .query(&mut conn)
                        .ok()?;
                    let in_step = !replication.contains("role:slave")
                        || replication
                            .lines()
                            .any(|l| l.trim() == "master_link_status:up");
                    let ok = info.lines().any(|l| l.trim() == "cluster_state:ok")
                        && info.lines().any(|l| l.trim() == "cluster_slots_ok:16384")
                        && in_step;
                    ok.then(|| self.layout_seen_by(node))?
                })
                .collect();
            if layouts.iter().all(Option::is_some) && layouts.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never settled");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `port: slots` of each primary, as `node` sees them, sorted.
    fn layout_seen_by(&self, node: &RedisServer) -> Option<String> {
        let mut conn = node.client().get_connection().ok()?;
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
        let mut primaries: Vec<String> = text
            .lines()
            .filter(|l| {
                let flags = l.split_whitespace().nth(2).unwrap_or_default();
                flags.contains("master") && !flags.contains("fail")
            })
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let address = fields[1].split(['@', ',']).next().unwrap_or_default();
                format!("{address} {}", fields[8..].join(" "))
            })
            .collect();
        primaries.sort();
        Some(primaries.join("; "))
    }

    /// The id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        let node = self.nodes.iter().find(|n| n.port == port).unwrap();
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node.conn())
            .unwrap()
    }

    /// The port of the primary serving `slot`.
    pub fn primary_of(&self, slot: u16) -> u16 {
        for node in self.live() {
            let Ok(mut conn) = node.client().get_connection() else {
                continue;
            };
            let Ok(text) = redis::cmd("CLUSTER")
                .arg("NODES")
                .query::<String>(&mut conn)
            else {
                continue;
            };
            if let Some(map) = flashspin_core::cluster::SlotMap::from_cluster_nodes(&text)
                && let Some(node) = map.node(slot)
            {
                return node.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no node knows slot {slot}");
    }

    /// The ports of the primaries.
    pub fn primaries(&self) -> Vec<u16> {
        self.live()
            .filter(|n| {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut n.conn())
                    .unwrap_or_default();
                info.lines().any(|l| l.trim() == "role:master")
            })
            .map(|n| n.port)
            .collect()
    }

    /// Moves `count` slots from the primary on port `from` to the one on
    /// `to`, keys and all, as an operator would (`redis-cli --cluster
    /// reshard`); returns once the cluster has settled.
    pub fn reshard(&self, from: u16, to: u16, count: u16) {
        let status = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "redis-cli --cluster reshard failed");
        self.wait_ok();
    }

    /// Kills the node on `port` (SIGKILL); its replica, if any, takes over
    /// after the node timeout. [`RedisCluster::wait_ok`] waits for that.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).unwrap();
        node.kill();
    }

    /// Each running node's `port` and Redis CPU seconds so far (user and
    /// system), for the benchmark's share of work per primary.
    pub fn cpu_seconds(&self) -> Vec<(u16, f64)> {
        self.live()
            .map(|n| {
                let info: String = redis::cmd("INFO")
                    .arg("cpu")
                    .query(&mut n.conn())
                    .unwrap_or_default();
                let field = |name: &str| -> f64 {
                    info.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0.0)
                };
                (n.port, field("used_cpu_user") + field("used_cpu_sys"))
            })
            .collect()
    }
}
