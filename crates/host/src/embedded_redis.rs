//! The embedded default: when the app's `redis_address` has no value, `up`
//! starts a private `redis-server` on a free loopback port and stops it on
//! exit. It writes an append-only file (AOF), fsynced every second or after
//! every write ([`Fsync`]), in a folder of the operator's choosing, where it
//! finds its data again on the next start, or in a temporary folder that is
//! discarded on exit.
//!
//! It is the app's alone: it requires a password (`requirepass`, handed to
//! it on its standard input so that no command line shows it), and its
//! folder is the owner's only (0700), the files it creates in it too
//! (0600, through the umask it is started with).

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redis::{IntoConnectionInfo as _, RedisConnectionInfo};

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
    /// `redis://127.0.0.1:PORT`, without the password: it is also an
    /// `allowed_outbound_hosts` entry, which may carry no credentials.
    pub url: String,
    port: u16,
    password: String,
    dir: DataDir,
}

impl EmbeddedRedis {
    /// Starts a server requiring `password`, keeping its data in `dir`
    /// (created if missing, and made the owner's only), or in a temporary
    /// folder when `None`.
    pub fn start(dir: Option<&Path>, fsync: Fsync, password: &str) -> anyhow::Result<Self> {
        // A port found free may be taken by someone else before our server
        // binds it; then we try another.
        for _ in 0..5 {
            let dir = match dir {
                Some(path) => {
                    std::fs::create_dir_all(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                        .with_context(|| format!("cannot make {} private", path.display()))?;
                    DataDir::Kept(path.canonicalize()?)
                }
                None => DataDir::Temporary(
                    tempfile::Builder::new()
                        .prefix("flashspin-redis-")
                        .tempdir()?,
                ),
            };
            if let Some(redis) = Self::start_on(free_port()?, dir, fsync, password)? {
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

    /// The URL with the password in it, for what the host itself connects
    /// with (a Redis trigger on this server).
    pub fn url_with_password(&self) -> String {
        let mut encoded = String::new();
        for byte in self.password.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        format!("redis://:{encoded}@127.0.0.1:{}", self.port)
    }

    /// Starts a server on `port`; `None` when something else holds the port.
    fn start_on(
        port: u16,
        dir: DataDir,
        fsync: Fsync,
        password: &str,
    ) -> anyhow::Result<Option<Self>> {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", fsync.name()])
            .arg("--dir")
            .arg(dir.path())
            // The rest of the configuration, the password, comes on stdin.
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: umask is async-signal-safe, so it may run between fork
        // and exec; it changes the child's file-creation mask only, and
        // redis-server creates its files with the modes it is left.
        unsafe {
            command.pre_exec(|| {
                libc::umask(0o077);
                Ok(())
            });
        }
        let child = command.spawn();
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
            port,
            password: password.to_string(),
            dir,
        };
        // Closed at once, so the server reads to its end and starts. If the
        // write fails the server has exited, or runs without the password
        // and never answers `wait_ready`, which connects with it.
        if let Some(mut stdin) = redis.child.stdin.take() {
            let line = format!("requirepass {}\n", config_string(password));
            let _ = stdin.write_all(line.as_bytes());
        }
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
            if let Some(pid) = server_pid(self.port, &self.password) {
                return Ok(pid == self.child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not start listening at {}", self.url)
    }
}

/// The process id of the Redis server on `port` that takes `password`, if
/// one answers.
fn server_pid(port: u16, password: &str) -> Option<u32> {
    let info = ("127.0.0.1", port)
        .into_connection_info()
        .ok()?
        .set_redis_settings(RedisConnectionInfo::default().set_password(password));
    let mut conn = redis::Client::open(info).ok()?.get_connection().ok()?;
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

/// `value` as a quoted string of Redis's configuration syntax, every byte
/// but letters and digits escaped.
fn config_string(value: &str) -> String {
    let mut quoted = String::from("\"");
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() {
            quoted.push(char::from(byte));
        } else {
            quoted.push_str(&format!("\\x{byte:02x}"));
        }
    }
    quoted.push('"');
    quoted
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_password_of_any_characters_is_required_and_works() {
        let password = "p a\"s%41s#@/\\é";
        let redis = EmbeddedRedis::start(None, Fsync::Everysec, password).unwrap();
        let ping = |url: &str| -> redis::RedisResult<String> {
            let mut conn = redis::Client::open(url)?.get_connection()?;
            redis::cmd("PING").query(&mut conn)
        };
        assert_eq!(ping(&redis.url_with_password()).unwrap(), "PONG");
        let refused = ping(&redis.url).unwrap_err();
        assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
    }
}
