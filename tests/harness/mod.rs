//! The black-box test harness: every test starts its own `redis-server` and
//! its own copy of the app on free loopback ports and talks HTTP to it.
//!
//! The app runs under `flashspin up`, or under a real Spin when `SPIN_BIN`
//! names its binary (`spin up --listen ADDR`), so the same suite checks that
//! the app behaves the same on both hosts. Tests talk to it through
//! [`App::api`], the testkit's typed client.

#![allow(dead_code)]

pub mod browser;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use flashspin_testkit::api::Client;
pub use flashspin_testkit::{RedisServer, SinkMode, SmsSink, free_port};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The app's own manifest.
/// The app's own manifest: `spin.toml` (the WASI 0.2 build), or the one
/// `FLASHSPIN_MANIFEST` names (`spin.wasip3.toml`, for a host that runs
/// WASI 0.3 components), so that the suite runs against either build.
pub fn app_manifest() -> PathBuf {
    let name = std::env::var("FLASHSPIN_MANIFEST").unwrap_or_else(|_| "spin.toml".into());
    repo_root().join(name)
}

/// Whether the suite runs the WASI 0.3 build.
pub fn is_wasip3_build() -> bool {
    app_manifest().ends_with("spin.wasip3.toml")
}

/// The order exporter's manifest, an app of one Redis trigger, of the
/// build under test.
pub fn export_manifest() -> PathBuf {
    repo_root().join(if is_wasip3_build() {
        "export.wasip3.toml"
    } else {
        "export.toml"
    })
}

/// The manifest of the host test fixtures.
pub fn fixture_manifest() -> PathBuf {
    repo_root().join("tests/fixtures/spin.toml")
}

/// Which host runs the app.
enum Host {
    Flashspin(PathBuf),
    Spin(PathBuf),
}

fn host() -> Host {
    match std::env::var_os("SPIN_BIN") {
        Some(spin) => Host::Spin(PathBuf::from(spin)),
        None => Host::Flashspin(PathBuf::from(env!("CARGO_BIN_EXE_flashspin"))),
    }
}

pub fn is_real_spin() -> bool {
    matches!(host(), Host::Spin(_))
}

/// Whether the host runs WASI 0.3 components (spin-sdk 7): flashspin does,
/// and Spin from 4.1 on (`spin --version` says which Spin it is; 4.0.2 and
/// older cannot load them).
pub fn runs_wasip3() -> bool {
    match host() {
        Host::Flashspin(_) => true,
        Host::Spin(bin) => spin_version(&bin).is_none_or(|version| version >= (4, 1)),
    }
}

/// The major and minor version of the real Spin that runs the app, if one
/// does: for a test of something a Spin release changed.
pub fn real_spin_version() -> Option<(u32, u32)> {
    match host() {
        Host::Flashspin(_) => None,
        Host::Spin(bin) => spin_version(&bin),
    }
}

/// The major and minor version of a Spin binary (`spin 4.1.0-pre0 (...)`).
fn spin_version(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.strip_prefix("spin ")?.split_whitespace().next()?;
    let mut numbers = version.split(['.', '-']).map(|n| n.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Builds the components of `manifest` once per test process.
fn build_once(manifest: &Path) {
    static BUILT: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|m| m == manifest) {
        return;
    }
    let mut cmd = match host() {
        Host::Flashspin(bin) => Command::new(bin),
        Host::Spin(bin) => Command::new(bin),
    };
    let status = cmd
        .arg("build")
        .arg("-f")
        .arg(manifest)
        .stdout(Stdio::null())
        .status()
        .expect("cannot run the build");
    assert!(status.success(), "building {} failed", manifest.display());
    built.push(manifest.to_path_buf());
}

/// Builds the app and returns each component's name and `.wasm` path.
pub fn built_app_components() -> Vec<(String, PathBuf)> {
    let manifest = app_manifest();
    build_once(&manifest);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    doc["component"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, component)| {
            let source = component["source"].as_str().unwrap();
            (name.clone(), repo_root().join(source))
        })
        .collect()
}

/// A running app, stopped when dropped.
pub struct App {
    child: Child,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The app's API, over `http`.
    pub api: Client,
    stopped: bool,
}

/// The app's required secrets, as the tests set them.
pub const TEST_SECRETS: [(&str, &str); 2] = [
    ("code_secret", "test-code-secret"),
    ("id_secret", "test-id-secret"),
];

/// How to start an app: manifest and variables.
pub struct AppConfig {
    manifest: PathBuf,
    vars: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    build: bool,
    /// Whether the app has HTTP triggers, to wait for; an app of Redis
    /// triggers alone is up once it has subscribed.
    http: bool,
    /// More arguments of `up`, given to either host.
    args: Vec<String>,
}

impl AppConfig {
    /// The app's own manifest also gets its two required secrets (test
    /// values); [`AppConfig::unset`] takes them away.
    pub fn new(manifest: PathBuf) -> Self {
        let mut vars = BTreeMap::new();
        if manifest == app_manifest() {
            for (name, value) in TEST_SECRETS {
                vars.insert(name.to_string(), value.to_string());
            }
        }
        Self {
            http: manifest_serves_http(&manifest),
            manifest,
            vars,
            env: BTreeMap::new(),
            build: true,
            args: Vec::new(),
        }
    }

    /// Adds an argument of `up` that both hosts take (such as
    /// `--max-instance-reuse-count`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Leaves a variable unset.
    pub fn unset(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    /// Starts without running the manifest's build commands: for a manifest
    /// the host is expected to refuse, or one whose components are built
    /// elsewhere.
    pub fn without_build(mut self) -> Self {
        self.build = false;
        self
    }

    /// Sets a Spin variable (through `SPIN_VARIABLE_<NAME>`).
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_string(), value.into());
        self
    }

    /// Sets an environment variable of the host process.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.insert(name.to_string(), value.into());
        self
    }

    pub async fn start(self) -> App {
        match self.try_start().await {
            Ok(app) => app,
            Err(log) => panic!("the app did not start:\n{log}"),
        }
    }

    /// Starts the app; on failure returns what it printed.
    pub async fn try_start(self) -> Result<App, String> {
        if self.build {
            build_once(&self.manifest);
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        // Our host binds port 0 and says which port it got, so no other
        // test can take the port in between; Spin is given a free port.
        let (mut cmd, listen) = match host() {
            Host::Flashspin(bin) => {
                let mut cmd = Command::new(bin);
                cmd.arg("up").arg("--no-build");
                (cmd, "127.0.0.1:0".to_string())
            }
            Host::Spin(bin) => {
                let mut cmd = Command::new(bin);
                cmd.arg("up");
                (cmd, format!("127.0.0.1:{}", free_port()))
            }
        };
        cmd.arg("-f").arg(&self.manifest);
        // `--listen` is the HTTP trigger's: both hosts refuse it for an app
        // of Redis triggers alone.
        if self.http {
            cmd.arg("--listen").arg(&listen);
        }
        cmd.args(&self.args);
        for (name, value) in &self.vars {
            cmd.env(
                format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                value,
            );
        }
        // Spin appends a backtrace to the error texts a guest is given when
        // `RUST_BACKTRACE` is set (anyhow captures one): the runner's own
        // setting must not reach the app.
        cmd.env_remove("RUST_BACKTRACE");
        cmd.envs(&self.env);
        let out = std::fs::File::create(&log).unwrap();
        // A group of its own, so that stopping the app also stops whatever
        // it started (`spin up` runs `spin trigger http`; flashspin may run
        // a redis-server).
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot start the host");
        let http = reqwest::Client::new();
        let mut app = App {
            child,
            base: String::new(),
            log,
            _dir: dir,
            api: Client::with_http("", http.clone()),
            http,
            stopped: false,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if app.child.try_wait().unwrap().is_some() {
                return Err(app.logs());
            }
            if !self.http {
                // Spin and flashspin both list the channels once subscribed.
                if app.logs().contains("Active Channels on") {
                    return Ok(app);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if app.base.is_empty() {
                app.base = if listen.ends_with(":0") {
                    serving_base(&app.logs()).unwrap_or_default()
                } else {
                    format!("http://{listen}")
                };
                if app.base.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                app.api = Client::with_http(app.base.clone(), app.http.clone());
            }
            let probe = app.api.get("/.well-known/spin/health").try_send().await;
            if probe.is_ok_and(|r| (200..300).contains(&r.status)) {
                return Ok(app);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("timed out waiting for the app\n{}", app.logs()))
    }
}

/// Whether a manifest has an HTTP trigger (as opposed to Redis triggers
/// only).
fn manifest_serves_http(manifest: &std::path::Path) -> bool {
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    text.contains("[[trigger.http]]")
}

/// The address a host's start-up banner names (`Serving http://ip:port`).
fn serving_base(logs: &str) -> Option<String> {
    logs.lines()
        .find_map(|line| line.strip_prefix("Serving "))
        .map(|base| base.trim().to_string())
}

/// Round trips per request of `component`, in order, from the host's
/// request log (`... -> component 200 1.2ms redis=2`).
pub fn round_trips(logs: &str, component: &str) -> Vec<u32> {
    logs.lines()
        .filter(|l| l.contains(&format!("-> {component} ")))
        .filter_map(|l| l.rsplit_once("redis=")?.1.trim().parse().ok())
        .collect()
}

/// The admin key of [`loose_config`] apps.
pub const ADMIN_KEY: &str = "test-admin-key";

/// The app with an SMS sink, an admin key, and limits loose enough for
/// many users buying at once.
pub fn loose_config(redis: &RedisServer, sink: &SmsSink) -> AppConfig {
    AppConfig::new(app_manifest())
        .var("redis_address", redis.url())
        .var("sms_webhook_origin", sink.origin())
        .var("admin_key", ADMIN_KEY)
        .var("rate_limit_user", "1000/1")
        .var("rate_limit_ip", "100000/1")
        .var("rate_limit_global", "100000/1")
        .var("code_hourly_limit_per_ip", "100000")
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the host and the components printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The logs once they contain `needle`, waiting up to 5 s: a host may
    /// write a guest's output a moment after the client has its response.
    pub async fn logs_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit (after it was stopped).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGINT, as Ctrl-C would.
    pub fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }
}

impl App {
    /// The process group the host and everything it started run in.
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }

    /// Stops the whole group, once: SIGTERM first, as an operator would,
    /// then SIGKILL for anything still running after a grace period. The
    /// host is reaped last: until then its pid keeps the group id reserved,
    /// so no signal can reach an unrelated group that reused it.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let group = self.process_group();
        for (signal, grace) in [
            ("TERM", Duration::from_secs(5)),
            ("KILL", Duration::from_secs(5)),
        ] {
            if live_processes_in_group(group).is_empty() {
                break;
            }
            signal_group(group, signal);
            let deadline = Instant::now() + grace;
            while !live_processes_in_group(group).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the whole group at once (SIGKILL), as a crash would: nothing
    /// gets to finish what it was doing.
    pub fn kill(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        signal_group(self.process_group(), "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM to the host alone, not to its group: what the host
    /// started must then stop because the host stops it.
    pub fn terminate_host(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

/// Processes of `group` that are still running (zombies, which only wait
/// for their parent to reap them, do not count), read from `/proc`.
pub fn live_processes_in_group(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str())
        })
        .collect()
}
