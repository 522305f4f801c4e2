//! The app under test: started here (a private `redis-server`, an SMS sink
//! and `flashspin up`, or a real `spin up`, with limits opened wide) or
//! already running.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flashspin_testkit::api::{Client, NewGoods, NewVoucher};
use flashspin_testkit::{RedisCluster, RedisServer, SmsSink, free_port};

pub struct Target {
    /// The app's API, over a client with a connection pool large enough
    /// for the benchmark's concurrency.
    pub api: Client,
    pub sink: Arc<SmsSink>,
    redis_url: String,
    /// Every Redis node whose counters are read: the one Redis, or each
    /// node of the cluster.
    redis_nodes: Vec<String>,
    admin_key: String,
    _redis: Option<Redis>,
    app: Option<Child>,
    /// The parts of the scarce scenario's voucher (`--hot-voucher-parts`).
    pub hot_voucher_parts: Option<u8>,
}

/// The Redis this tool started for the app.
enum Redis {
    Single(#[allow(dead_code)] RedisServer),
    Cluster(#[allow(dead_code)] RedisCluster),
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(app) = &mut self.app {
            stop(app);
        }
    }
}

/// The export app, stopped when dropped.
pub struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// Stops a host and whatever it started (`spin up` runs its triggers as
/// child processes): it runs in a process group of its own.
fn stop(app: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", app.id())])
        .stderr(Stdio::null())
        .status();
    let _ = app.wait();
}

/// How the app is served: which host binary, which manifest, and how far
/// away Redis is.
#[derive(Clone, Debug)]
pub struct Serving {
    /// `flashspin`, or a real `spin` (a file name starting with `spin`).
    pub host: std::path::PathBuf,
    /// The app's manifest (`spin.toml`, or `spin.wasip3.toml`).
    pub manifest: String,
    /// Each way, between the app and Redis (see `link`).
    pub redis_delay: Option<Duration>,
    /// Serve from a Redis Cluster of this many primaries instead of one
    /// Redis.
    pub redis_cluster: Option<usize>,
}

impl Serving {
    fn is_spin(&self) -> bool {
        is_spin(&self.host)
    }
}

fn is_spin(host: &Path) -> bool {
    host.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("spin"))
}

/// Limits high enough that the limiter runs on every request but refuses
/// none: the benchmark measures the work, not the refusals.
/// What each benchmark voucher costs, cents.
pub const VOUCHER_PAY_VALUE: i64 = 100;

/// The secret the benchmark signs its payment webhooks with.
pub const WEBHOOK_SECRET: &str = "bench-webhook-secret";

const VARIABLES: [(&str, &str); 9] = [
    ("payment_webhook_secret", WEBHOOK_SECRET),
    ("rate_limit_user", "1000000/1"),
    ("rate_limit_ip", "1000000/1"),
    ("rate_limit_global", "1000000/1"),
    ("code_resend_secs", "1"),
    ("code_daily_limit_per_phone", "1000000"),
    ("code_hourly_limit_per_ip", "100000000"),
    ("id_secret", "bench"),
    ("code_secret", "bench"),
];

impl Target {
    /// Starts the app with the benchmark's variables and `extra` ones
    /// (name, value), which win.
    pub async fn start(
        serving: &Serving,
        admin_key: &str,
        extra: &[(&'static str, &str)],
    ) -> anyhow::Result<Self> {
        let host = serving.host.as_path();
        if !host.exists() && !serving.is_spin() {
            println!("Building {} in release mode ...", host.display());
            let status = Command::new("cargo")
                .args(["build", "--release", "-p", "flashspin"])
                .status()?;
            if !status.success() {
                bail!("building the host failed");
            }
        }
        let (redis, seed, redis_nodes) = match serving.redis_cluster {
            Some(primaries) => {
                let cluster = RedisCluster::start(primaries, 0);
                let nodes = cluster.nodes.iter().map(|n| n.url()).collect();
                let seed = cluster.seed_url();
                (Redis::Cluster(cluster), seed, nodes)
            }
            None => {
                let redis = RedisServer::start();
                let url = redis.url();
                (Redis::Single(redis), url.clone(), vec![url])
            }
        };
        let sink = Arc::new(SmsSink::start().await);
        // The app reaches Redis over the slow link, when there is one; this
        // tool reads Redis's counters directly.
        let app_redis = match serving.redis_delay {
            Some(delay) => {
                let upstream = seed.trim_start_matches("redis://").to_string();
                let port = crate::link::start(upstream, delay).await?;
                format!("redis://127.0.0.1:{port}")
            }
            None => seed.clone(),
        };
        let mut env = vec![
            ("REDIS_ADDRESS", app_redis),
            ("SMS_WEBHOOK_ORIGIN", sink.origin()),
            ("ADMIN_KEY", admin_key.to_string()),
        ];
        if serving.redis_cluster.is_some() {
            env.push(("REDIS_CLUSTER", "true".into()));
            env.push(("REDIS_CLUSTER_HOSTS", "redis://127.0.0.1:*".into()));
            env.push(("REDIS_SHARDS", "16".into()));
        }
        for (name, value) in VARIABLES {
            if !extra.iter().any(|(n, _)| *n == name) {
                env.push((name, value.to_string()));
            }
        }
        for (name, value) in extra {
            env.push((name, value.to_string()));
        }
        let (app, port) = serve(host, &serving.manifest, &env)?;
        let target = Target {
            api: client(format!("http://127.0.0.1:{port}")),
            sink,
            redis_url: seed,
            redis_nodes,
            admin_key: admin_key.to_string(),
            _redis: Some(redis),
            app: Some(app),
            hot_voucher_parts: None,
        };
        target.wait_ready().await?;
        Ok(target)
    }

    /// The host tests' probe app, served by another `flashspin` on this
    /// target's Redis: its `?action=pings&n=N` is the floor for an endpoint
    /// of N round trips.
    pub async fn start_probe(&self, host: &Path) -> anyhow::Result<Self> {
        let env = [
            ("REDIS_ADDRESS", self.redis_url.clone()),
            ("FIXTURE_SECRET", "bench".to_string()),
        ];
        let (app, port) = serve(host, PROBE_MANIFEST, &env)?;
        let target = Target {
            api: client(format!("http://127.0.0.1:{port}")),
            sink: self.sink.clone(),
            redis_url: self.redis_url.clone(),
            redis_nodes: self.redis_nodes.clone(),
            admin_key: String::new(),
            _redis: None,
            app: Some(app),
            hot_voucher_parts: None,
        };
        target.wait_ready().await?;
        Ok(target)
    }

    /// The order exporter (`export.toml`) on this target's Redis, writing to
    /// the PostgreSQL at `pg_address`; ready once it has subscribed.
    pub async fn start_exporter(
        &self,
        host: &Path,
        pg_address: &str,
        pg_host: &str,
    ) -> anyhow::Result<Exporter> {
        let env = [
            ("REDIS_ADDRESS", self.redis_url.clone()),
            ("PG_ADDRESS", pg_address.to_string()),
            ("PG_HOST", pg_host.to_string()),
        ];
        let (app, _) = serve(host, EXPORT_MANIFEST, &env)?;
        let exporter = Exporter(app);
        let mut conn = redis::Client::open(self.redis_url.as_str())?.get_connection()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, listening): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(flashspin_core::keys::ORDER_EXPORT_CHANNEL)
                .query(&mut conn)?;
            if listening > 0 {
                return Ok(exporter);
            }
            if Instant::now() > deadline {
                bail!("the exporter did not subscribe");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// Runs the operator's drain of the order outbox: the events it found
    /// still waiting.
    pub async fn drain_orders(&self) -> anyhow::Result<u64> {
        let drained = self.api.export_orders(&self.admin_key).try_send().await?;
        Ok(drained.try_ok().context("draining the outbox")?.events)
    }

    pub async fn existing(
        url: &str,
        redis: &str,
        sink_port: u16,
        admin_key: &str,
    ) -> anyhow::Result<Self> {
        let sink = Arc::new(SmsSink::start_on(sink_port).await);
        let target = Target {
            api: client(url),
            sink,
            redis_url: redis.to_string(),
            redis_nodes: vec![redis.to_string()],
            admin_key: admin_key.to_string(),
            _redis: None,
            app: None,
            hot_voucher_parts: None,
        };
        target.wait_ready().await?;
        Ok(target)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let probe = self.api.health().try_send().await;
            if probe.is_ok_and(|answer| (200..300).contains(&answer.status)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the app at {} did not become healthy", self.api.base())
    }

    /// Signs in `n` users (phones 150xxxxxxxx), 50 at a time, and returns
    /// their tokens.
    pub async fn sign_in_users(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let phones: Vec<String> = (0..n).map(|i| format!("150{i:08}")).collect();
        let sessions = self
            .api
            .try_sign_in_all(&self.sink, &phones, 50)
            .await
            .context("signing the users in")?;
        Ok(sessions.into_iter().map(|s| s.token).collect())
    }

    /// A voucher whose sale is open for the whole run.
    pub async fn create_voucher(&self, stock: i64) -> anyhow::Result<String> {
        self.create_voucher_in_parts(stock, None).await
    }

    /// A voucher whose sale is open for the whole run, its stock split
    /// into `parts`.
    pub async fn create_voucher_in_parts(
        &self,
        stock: i64,
        parts: Option<u8>,
    ) -> anyhow::Result<String> {
        let body = NewVoucher {
            shop_id: "1".into(),
            title: "bench".into(),
            sub_title: None,
            rules: None,
            pay_value: VOUCHER_PAY_VALUE,
            actual_value: 200,
            stock,
            begin_time: "2026-01-01T00:00:00Z".into(),
            end_time: "2093-01-01T00:00:00Z".into(),
            parts,
        };
        let created = self.api.create_voucher(&self.admin_key, &body).try_send();
        let created = created.await?.try_ok().context("creating a voucher")?;
        Ok(created.voucher.id)
    }

    pub async fn create_goods(&self, total_shares: i64) -> anyhow::Result<String> {
        let body = NewGoods {
            title: "bench".into(),
            total_shares,
            share_price: 100,
            code_base: None,
            max_periods: None,
        };
        let created = self.api.create_goods(&self.admin_key, &body).try_send();
        let created = created.await?.try_ok().context("creating a goods")?;
        Ok(created.goods.id)
    }

    /// The counters so far: Redis's commands and CPU (one `INFO all` on
    /// each node, added up) and the host's CPU.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut counters = Counters::default();
        for node in &self.redis_nodes {
            let mut conn = redis::Client::open(node.as_str())?.get_connection()?;
            let info: String = redis::cmd("INFO").arg("all").query(&mut conn)?;
            let seconds = |field: &str| -> Option<f64> {
                info.lines()
                    .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
                    .trim()
                    .parse()
                    .ok()
            };
            let redis = seconds("used_cpu_sys")
                .zip(seconds("used_cpu_user"))
                .map(|(sys, user)| Duration::from_secs_f64(sys + user));
            counters.commands.add(&CommandStats::parse(&info));
            counters.cpu.add(&CpuTimes { host: None, redis });
            counters.connections += seconds("total_connections_received").unwrap_or(0.0) as u64;
            counters.node_cpu.push(redis.unwrap_or_default());
        }
        counters.cpu.host = self.app.as_ref().and_then(|app| process_cpu(app.id()));
        Ok(counters)
    }
}

/// What the tool reads before and after each slice of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub commands: CommandStats,
    pub cpu: CpuTimes,
    /// Connections Redis has accepted (`total_connections_received`).
    pub connections: u64,
    /// Each Redis node's CPU, in the order the tool reads the nodes.
    pub node_cpu: Vec<Duration>,
}

impl Counters {
    /// What happened between `self` and `later`.
    pub fn delta(&self, later: &Counters) -> Counters {
        Counters {
            commands: self.commands.delta(&later.commands),
            cpu: self.cpu.delta(&later.cpu),
            // Without the connections `later` was read on, one per node.
            connections: later
                .connections
                .saturating_sub(self.connections)
                .saturating_sub(later.node_cpu.len().max(1) as u64),
            node_cpu: later
                .node_cpu
                .iter()
                .enumerate()
                .map(|(i, after)| {
                    after.saturating_sub(self.node_cpu.get(i).copied().unwrap_or_default())
                })
                .collect(),
        }
    }

    /// Adds another slice of the same scenario.
    pub fn add(&mut self, other: &Counters) {
        self.commands.add(&other.commands);
        self.cpu.add(&other.cpu);
        self.connections += other.connections;
        self.node_cpu.resize(
            other.node_cpu.len().max(self.node_cpu.len()),
            Duration::ZERO,
        );
        for (mine, theirs) in self.node_cpu.iter_mut().zip(&other.node_cpu) {
            *mine += *theirs;
        }
    }
}

/// CPU time used so far by the host process (when this tool started it)
/// and by Redis (from `INFO`, so also for an app already running).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub host: Option<Duration>,
    pub redis: Option<Duration>,
}

impl CpuTimes {
    /// CPU used between `self` and `later`.
    pub fn delta(&self, later: &CpuTimes) -> CpuTimes {
        let sub = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
        CpuTimes {
            host: sub(self.host, later.host),
            redis: sub(self.redis, later.redis),
        }
    }

    /// Adds another slice of the same scenario.
    pub fn add(&mut self, other: &CpuTimes) {
        let add = |a: Option<Duration>, b: Option<Duration>| Some(a.unwrap_or_default() + b?);
        self.host = add(self.host, other.host);
        self.redis = add(self.redis, other.redis);
    }
}

/// User plus system time of the host's process group (`spin up` serves
/// from a child process), every thread included, finished ones too, from
/// `/proc/<pid>/stat` (Linux counts it in 1/100 s).
fn process_cpu(group: u32) -> Option<Duration> {
    let mut ticks = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name (field 2) may contain spaces; field 3 starts two
        // bytes after its closing parenthesis.
        let Some(rest) = stat.rfind(')').and_then(|at| stat.get(at + 2..)) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if number(2) != Some(u64::from(group)) {
            continue;
        }
        found = true;
        ticks += number(11).unwrap_or(0) + number(12).unwrap_or(0);
    }
    found.then(|| Duration::from_millis(ticks * 10))
}

const PROBE_MANIFEST: &str = "tests/fixtures/spin.toml";
const EXPORT_MANIFEST: &str = "export.toml";

/// Builds the components of `manifest` and serves them with `host` on a
/// free port, with `env` as Spin variables (`SPIN_VARIABLE_<name>`).
fn serve(host: &Path, manifest: &str, env: &[(&str, String)]) -> anyhow::Result<(Child, u16)> {
    let status = Command::new(host)
        .args(["build", "-f", manifest])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("building the components of {manifest} failed");
    }
    let port = free_port();
    let mut cmd = Command::new(host);
    // `spin up` does not build unless asked to; `flashspin up` must be told
    // not to.
    cmd.arg("up");
    if !is_spin(host) {
        cmd.arg("--no-build");
    }
    cmd.args(["-f", manifest])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in env {
        cmd.env(
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value,
        );
    }
    let app = cmd.spawn().context("cannot start the host")?;
    Ok((app, port))
}

fn client(base: impl Into<String>) -> Client {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("an HTTP client");
    Client::with_http(base, http)
}

/// The commands the measured endpoints send themselves; on a cluster also
/// the router's layout reads and `ASKING`.
const ROUND_TRIP_COMMANDS: [&str; 5] = ["evalsha", "eval", "ping", "cluster|nodes", "asking"];

/// Redis command counts, and the time Redis spent running each command
/// (a script's time includes the commands it runs).
#[derive(Debug, Clone, Default)]
pub struct CommandStats {
    pub calls: BTreeMap<String, u64>,
    pub usec: BTreeMap<String, u64>,
}

impl CommandStats {
    /// Calls and time per command, from the `cmdstat_` lines of `INFO`.
    pub fn parse(info: &str) -> Self {
        let mut stats = CommandStats::default();
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |key: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            stats.calls.insert(name.to_string(), field("calls"));
            stats.usec.insert(name.to_string(), field("usec"));
        }
        stats
    }

    /// Adds the counts of `other` (another slice of the same scenario).
    pub fn add(&mut self, other: &CommandStats) {
        for (name, n) in &other.calls {
            *self.calls.entry(name.clone()).or_default() += n;
        }
        for (name, n) in &other.usec {
            *self.usec.entry(name.clone()).or_default() += n;
        }
    }

    /// Commands run between `self` and `later`, without `INFO`.
    pub fn delta(&self, later: &CommandStats) -> CommandStats {
        // INFO is this tool's own reading of the counters.
        let diff = |before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>| {
            after
                .iter()
                .filter(|(name, _)| *name != "info")
                .map(|(name, n)| {
                    (
                        name.clone(),
                        n.saturating_sub(before.get(name).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        CommandStats {
            calls: diff(&self.calls, &later.calls),
            usec: diff(&self.usec, &later.usec),
        }
    }

    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Commands sent by clients rather than by scripts. Components send only
    /// EVALSHA and EVAL, except the baseline's PING (and, off the measured
    /// paths, the catalogue's plain reads), so for these scenarios this is
    /// exactly the number of round trips.
    pub fn round_trips(&self) -> u64 {
        ROUND_TRIP_COMMANDS
            .iter()
            .map(|c| self.calls.get(*c).copied().unwrap_or(0))
            .sum()
    }

    /// Microseconds Redis spent running the commands clients sent (scripts
    /// included), as opposed to reading, parsing and answering them and
    /// handling connections.
    pub fn command_usec(&self) -> u64 {
        ROUND_TRIP_COMMANDS
            .iter()
            .map(|c| self.usec.get(*c).copied().unwrap_or(0))
            .sum()
    }
}
