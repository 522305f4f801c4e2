//! A private PostgreSQL for tests: `initdb` into a temporary folder, the
//! server started with `pg_ctl` on a free loopback port, stopped when
//! dropped. Debian's `postgresql` package puts the programs in
//! `/usr/lib/postgresql/<version>/bin`, off the `PATH`; they are looked for
//! there too. PostgreSQL refuses to run as root, so under root (as on a CI
//! machine) it runs as the `postgres` user the package creates.
//!
//! [`NativePostgres`] is the core's PostgreSQL seam over the synchronous
//! `postgres` client (on the `tokio-postgres` the host pins), so that the
//! exporter's core can be run directly against the server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flashspin_core::database::{Database, DatabaseError, SqlValue};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::free_port;

pub struct PostgresServer {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    running: bool,
}

impl PostgresServer {
    /// Starts a server with a `postgres` superuser (no password, loopback
    /// only) and its default database `postgres`.
    pub fn start() -> Self {
        let bin = find_bin().expect(
            "PostgreSQL must be installed (Debian: `sudo apt-get install postgresql`; see README)",
        );
        let dir = tempfile::Builder::new()
            .prefix("flashspin-pg-")
            .tempdir()
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "cannot hand the data folder to postgres");
        }
        let mut server = PostgresServer {
            port: 0,
            bin,
            dir,
            as_postgres,
            running: false,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        for _ in 0..5 {
            server.port = free_port();
            if server.try_start() {
                server.running = true;
                return server;
            }
        }
        panic!("PostgreSQL did not start");
    }

    fn try_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = format!("{}/server.log", self.dir.path().display());
        let data = self.data();
        self.try_run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "30", "start",
            ],
        )
    }

    /// Starts the server again after [`PostgresServer::stop`], on the same
    /// port with the same data.
    pub fn restart(&mut self) {
        assert!(!self.running, "the server is running");
        assert!(self.try_start(), "PostgreSQL did not start again");
        self.running = true;
    }

    /// Opens a `psql` session that runs `sql` and then waits, holding what
    /// it took (a lock in an open transaction, say) until the session is
    /// dropped.
    pub fn hold(&self, sql: &str) -> HeldSession {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-X", "-q"])
            .args(["-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run psql");
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
        HeldSession { child }
    }

    /// The core's PostgreSQL seam on this server; nothing is opened yet.
    pub fn native(&self) -> NativePostgres {
        NativePostgres::new(self.url())
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.path().display())
    }

    /// Runs one of the server's programs, as `postgres` under root.
    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run(&self, program: &str, args: &[&str]) {
        assert!(self.try_run(program, args), "{program} failed");
    }

    /// Runs `sql` with `psql` and returns what it printed: unaligned, tuples
    /// only, fields separated by `|`.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// [`PostgresServer::psql`], with the server's error when it fails.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Stops the server now (fast shutdown), to see how callers cope with
    /// an outage.
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data();
            self.try_run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
            self.running = false;
        }
    }
}

/// A `psql` session left open; dropping it ends the session, and with it
/// whatever its open transaction held.
pub struct HeldSession {
    child: std::process::Child,
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The core's [`Database`] seam over the synchronous `postgres` client,
/// with errors mapped as `flashspin-spin`'s adapter over Spin maps them: no
/// connection is `Unreachable`, a statement the server refused `Refused`
/// with its SQLSTATE, anything else `Other`. The connection is opened on
/// first use and again after any failure, so it outlives a restart.
pub struct NativePostgres {
    url: String,
    client: Option<postgres::Client>,
}

impl NativePostgres {
    pub fn new(url: String) -> Self {
        Self { url, client: None }
    }

    fn connect(&self) -> Result<postgres::Client, DatabaseError> {
        let unreachable = |e: postgres::Error| DatabaseError::Unreachable(e.to_string());
        let mut config: postgres::Config = self.url.parse().map_err(unreachable)?;
        config.connect_timeout(Duration::from_secs(5));
        config.connect(postgres::NoTls).map_err(unreachable)
    }
}

/// SQL `NULL` for a parameter of any type (`Option<T>` only passes for
/// `T`'s types).
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl Database for NativePostgres {
    /// Blocks on the native client: the future is ready when polled.
    async fn execute(
        &mut self,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<u64, DatabaseError> {
        let values: Vec<Box<dyn ToSql + Sync>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    SqlValue::Int(i) => Box::new(*i),
                    SqlValue::Text(s) => Box::new(s.clone()),
                    SqlValue::Null => Box::new(Null),
                    SqlValue::IntArray(v) => Box::new(v.clone()),
                    SqlValue::TextArray(v) => Box::new(v.clone()),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let mut client = match self.client.take() {
            Some(client) => client,
            None => self.connect()?,
        };
        let result = client
            .execute(statement, &refs)
            .map_err(|e| match e.as_db_error() {
                Some(db) => DatabaseError::Refused {
                    code: db.code().code().to_string(),
                    message: db.message().to_string(),
                },
                None => DatabaseError::Other(e.to_string()),
            });
        // A connection that failed may be dead; the next call opens another.
        if result.is_ok() {
            self.client = Some(client);
        }
        result
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The folder of `initdb`, `pg_ctl` and `psql`: on the `PATH`, or Debian's.
fn find_bin() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "psql"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if complete(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir(Path::new("/usr/lib/postgresql"))
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| complete(bin))
        .collect();
    versions.sort();
    versions.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_server_starts_answers_and_stops() {
        let mut server = PostgresServer::start();
        server.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)");
        assert_eq!(server.psql("SELECT sum(n) FROM t").trim(), "42");
        server.stop();
        let refused = Command::new(server.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-c", "SELECT 1"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!refused.success(), "stopped means stopped");
    }
}
