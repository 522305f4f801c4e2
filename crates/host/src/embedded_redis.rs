//! The embedded default: when the app's `redis_address` has no value, `up`
//! starts a private `redis-server` on a free loopback port and stops it on
//! exit. It writes an append-only file (AOF), fsynced every second or after
//! every write ([`Fsync`]), in a folder of the operator's choosing, where it
//! finds its data again on the next start, or in a temporary folder that is
//! discarded on exit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// When the AOF reaches the disk: Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// Once a second: a crash of the machine can lose the last second of
    /// writes (a crash of Redis alone loses nothing the OS has).
    Everysec,
    /// Before each write is answered: nothing acknowledged is lost, at the
    /// price of a disk flush per write.
    Always,
}

impl Fsync {
    fn name(self) -> &'static str {
        match self {
            Fsync::Everysec => "everysec",
            Fsync::Always => "always",
        }
    }
}

/// Where the data lives: a folder that outlives the server, or a temporary
/// one removed on drop, after the server has stopped.
enum DataDir {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Kept(path) => path,
            DataDir::Temporary(dir) => dir.path(),
        }
    }
}

pub struct EmbeddedRedis {
    child: Child,
    pub url: String,
    dir: DataDir,
}

impl EmbeddedRedis {
    /// Starts a server keeping its data in `dir` (created if missing), or
    /// in a temporary folder when `None`.
    pub fn start(dir: Option<&Path>, fsync: Fsync) -> anyhow::Result<Self> {
        // A port found free may be taken by someone else before our server
        // binds it; then we try another.
        for _ in 0..5 {
            let dir = match dir {
                Some(path) => {
                    std::fs::create_dir_all(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    DataDir::Kept(path.canonicalize()?)
                }
                None => DataDir::Temporary(
                    tempfile::Builder::new()
                        .prefix("flashspin-redis-")
                        .tempdir()?,
                ),
            };
            if let Some(redis) = Self::start_on(free_port()?, dir, fsync)? {
                return Ok(redis);
            }
        }
        bail!("redis-server did not start (its messages, if any, are above)")
    }

    /// The folder the data is in, when it outlives the server.
    pub fn kept_dir(&self) -> Option<&Path> {
        match &self.dir {
            DataDir::Kept(path) => Some(path),
            DataDir::Temporary(_) => None,
        }
    }

    /// Starts a server on `port`; `None` when something else holds the port.
    fn start_on(port: u16, dir: DataDir, fsync: Fsync) -> anyhow::Result<Option<Self>> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", fsync.name()])
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
            dir,
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
