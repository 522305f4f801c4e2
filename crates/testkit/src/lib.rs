//! Support shared by the core's script tests, the black-box suite and the
//! benchmark: a private `redis-server` and a private PostgreSQL
//! ([`PostgresServer`]), a stand-in for the SMS gateway
//! ([`SmsSink`]), a private Redis Cluster ([`RedisCluster`]), [`NativeRedis`], the core's Redis seam over the native
//! `redis` client, so scripts can be run directly, [`NativePostgres`], the
//! core's PostgreSQL seam over the native `postgres` client, and [`api`], a
//! typed client of the app's HTTP API.

pub mod api;
mod cluster;
mod postgres;
mod sms;
pub use cluster::RedisCluster;
/// The core's Redis seam over native connections, shared with the tools.
pub use flashspin_native::{NativeConnector, NativeRedis, block_on};
pub use postgres::{HeldSession, NativePostgres, PostgresServer};
pub use sms::{SinkMode, Sms, SmsSink};

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port below 55536 whose cluster bus port, 10000 higher, is free
/// too.
fn free_port_with_bus() -> u16 {
    loop {
        let port = free_port();
        if port < 55536 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A private `redis-server` on a free loopback port, stopped when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// `appendfsync` of the append-only file; `None`: no persistence.
    fsync: Option<&'static str>,
    /// `cluster-node-timeout` in ms for a node of a [`RedisCluster`];
    /// `None`: a plain server.
    cluster_timeout_ms: Option<u32>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server that keeps nothing on disk.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server with an append-only file, flushed as `appendfsync` says
    /// (`always`, `everysec`): [`RedisServer::kill`] and
    /// [`RedisServer::restart`] then show what survives a crash.
    pub fn start_durable(appendfsync: &'static str) -> Self {
        Self::start_with(Some(appendfsync))
    }

    fn start_with(fsync: Option<&'static str>) -> Self {
        Self::start_node(fsync, None)
    }

    /// A server, or with `cluster_timeout_ms` a cluster node, which also
    /// listens on its port + 10000 (the cluster bus): its port is then
    /// below 55536 and chosen with that one free too.
    pub(crate) fn start_node(fsync: Option<&'static str>, cluster_timeout_ms: Option<u32>) -> Self {
        for _ in 0..5 {
            let port = match cluster_timeout_ms {
                Some(_) => free_port_with_bus(),
                None => free_port(),
            };
            let mut server = RedisServer {
                child: None,
                port,
                fsync,
                cluster_timeout_ms,
                dir: tempfile::tempdir().unwrap(),
            };
            server.spawn();
            if server.wait_ready() {
                return server;
            }
        }
        panic!("could not start redis-server");
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""]);
        match self.fsync {
            Some(fsync) => cmd.args(["--appendonly", "yes", "--appendfsync", fsync]),
            None => cmd.args(["--appendonly", "no"]),
        };
        if let Some(timeout) = self.cluster_timeout_ms {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &timeout.to_string()]);
        }
        let child = cmd
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see README)");
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL, as a crash would: no chance to flush
    /// or save anything.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts the server again on the same port and folder, where it reads
    /// back its append-only file.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(self.wait_ready(), "redis-server did not come back");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && child.try_wait().unwrap().is_some()
            {
                return false;
            }
            if let Ok(mut conn) = self.client().get_connection()
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut conn)
            {
                // The port was free when chosen, but another test may have
                // bound it since: only our own child counts as ready.
                let ours = self.child.as_ref().map(|c| c.id());
                if server_pid(&info) != ours {
                    return false;
                }
                // INFO answers while the append-only file is still being
                // read back; every other command is refused with LOADING.
                let loading = redis::cmd("INFO")
                    .arg("persistence")
                    .query::<String>(&mut conn)
                    .map(|info| info.lines().any(|line| line.trim() == "loading:1"));
                if let Ok(false) = loading {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether the server was started and not stopped or killed since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    pub fn conn(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// The core's Redis seam over a fresh connection.
    pub fn native(&self) -> NativeRedis {
        NativeRedis(self.conn())
    }

    /// Stops the server now (SIGKILL), to see how callers cope with an
    /// outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every key with no expiry: the tests' way of proving that nothing
    /// they wrote can linger for ever.
    pub fn keys_without_ttl(&self) -> Vec<String> {
        let mut conn = self.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        keys.into_iter()
            .filter(|k| redis::cmd("TTL").arg(k).query::<i64>(&mut conn).unwrap() == -1)
            .collect()
    }
}

/// The `process_id` an `INFO server` reply names.
fn server_pid(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
