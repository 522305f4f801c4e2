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
        let dir = tempfile::Builder::new()
            .prefix("flashspin-redis-")
            .tempdir()?;
        let port = free_port()?;
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
        redis.wait_ready(port)?;
        Ok(redis)
    }

    fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server exited at start-up with {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not start listening on port {port}")
    }
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
