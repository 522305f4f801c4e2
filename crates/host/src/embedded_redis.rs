//! The embedded default: when the app's `redis_address` has no value, `up`
//! starts a private `redis-server` on a free loopback port, with its data in
//! a temporary folder, and stops it on exit.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct EmbeddedRedis {
    child: Child,
    pub url: String,
    // Removed on drop, after the server has stopped.
    _dir: tempfile::TempDir,
}

impl EmbeddedRedis {
    pub fn start() -> anyhow::Result<Self> {
        // A port found free may be taken by someone else before our server
        // binds it; then we try another.
        for _ in 0..5 {
            if let Some(redis) = Self::start_on(free_port()?)? {
                return Ok(redis);
            }
        }
        bail!("redis-server did not start (its messages, if any, are above)")
    }

    /// Starts a server on `port`; `None` when something else holds the port.
    fn start_on(port: u16) -> anyhow::Result<Option<Self>> {
        let dir = tempfile::Builder::new()
            .prefix("flashspin-redis-")
            .tempdir()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no Redis configured and `redis-server` is not installed.\n\
                 Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`)\n\
                 or point the app at a Redis with SPIN_VARIABLE_REDIS_ADDRESS=redis://host:port"
            ),
            Err(e) => return Err(e).context("cannot start redis-server"),
        };
        let mut redis = Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            _dir: dir,
        };
        Ok(redis.wait_ready()?.then_some(redis))
    }

    /// Waits until the server answers; false if whoever answers on the port
    /// is not our child (the child then exits, unable to bind).
    fn wait_ready(&mut self) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(false);
            }
            if let Some(pid) = server_pid(&self.url) {
                return Ok(pid == self.child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not start listening at {}", self.url)
    }
}

/// The process id of the Redis server at `url`, if one answers.
fn server_pid(url: &str) -> Option<u32> {
    let mut conn = redis::Client::open(url).ok()?.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

impl Drop for EmbeddedRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
