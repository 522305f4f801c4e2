//! `flashspin`: a small host that builds and serves a Spin HTTP application
//! locally, the way `spin build` and `spin up` do, for development and tests.

mod app;
mod builder;
mod embedded_redis;
mod guest_output;
mod loader;
mod log;
mod manifest;
mod outbound;
mod outbound_http;
mod redis_trigger;
mod router;
mod server;
mod spin_api;
mod state;
mod template;
mod variables;
mod wasip3;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::embedded_redis::{EmbeddedRedis, Fsync};
use crate::manifest::Manifest;
use crate::variables::{AppVariables, env_name};

/// The variable the embedded Redis fills in when nothing else does.
const REDIS_ADDRESS: &str = "redis_address";
/// The variable that carries the embedded Redis's password to the app.
const REDIS_PASSWORD: &str = "redis_password";
/// The generated secrets, kept beside the embedded Redis's data.
const SECRETS_FILE: &str = "flashspin-secrets";

#[derive(Parser)]
#[command(version, about = "Build and serve a Spin HTTP app locally")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run every component's build command.
    Build {
        /// The application manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// Build what is stale, then serve the app.
    Up {
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
        /// Address to listen on (else `SPIN_HTTP_LISTEN_ADDR`, else
        /// 127.0.0.1:3000). Refused for an app without HTTP triggers, as
        /// Spin refuses it.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve the components as they are, without building.
        #[arg(long)]
        no_build: bool,
        /// With the embedded Redis: keep its data (an append-only file) in
        /// this folder, where the next `up` finds it. Without it the data
        /// is discarded on exit.
        #[arg(long, env = "FLASHSPIN_REDIS_DIR")]
        redis_dir: Option<PathBuf>,
        /// With the embedded Redis: when its append-only file reaches the
        /// disk. `always` loses no acknowledged write, even to a power cut.
        #[arg(
            long,
            env = "FLASHSPIN_REDIS_FSYNC",
            value_enum,
            default_value = "everysec"
        )]
        redis_fsync: Fsync,
        /// WASI 0.3 components only, as in Spin: the most requests an
        /// instance takes before it is dropped; `N` or a range `A..B`, drawn
        /// per instance.
        #[arg(long, value_parser = wasip3::parse_usize_range)]
        max_instance_reuse_count: Option<wasip3::Range<usize>>,
        /// WASI 0.3 components only: the most requests an instance runs at
        /// once; `N` or `A..B`.
        #[arg(long, value_parser = wasip3::parse_usize_range)]
        max_instance_concurrent_reuse_count: Option<wasip3::Range<usize>>,
        /// WASI 0.3 components only: how long a request's guest may take to
        /// answer (`500ms`, `2s`, `1..8s`), within the request time limit.
        #[arg(long, value_parser = wasip3::parse_duration_range)]
        request_timeout: Option<wasip3::Range<std::time::Duration>>,
        /// WASI 0.3 components only: how long an idle instance is kept for
        /// the next request (`1s`, `500ms`, `1..8s`).
        #[arg(long, default_value = "1s", value_parser = wasip3::parse_duration_range)]
        idle_instance_timeout: wasip3::Range<std::time::Duration>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        // The cause chain on numbered lines, as Spin prints it.
        eprintln!("Error: {e:?}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Commands::Build { manifest } => builder::build_all(&Manifest::load(&manifest)?),
        Commands::Up {
            manifest,
            listen,
            no_build,
            redis_dir,
            redis_fsync,
            max_instance_reuse_count,
            max_instance_concurrent_reuse_count,
            request_timeout,
            idle_instance_timeout,
        } => {
            let path = manifest;
            let manifest = Manifest::load(&path)?;
            loader::check(&manifest).with_context(|| {
                format!(
                    "Failed to load Spin app from {:?}",
                    path.display().to_string()
                )
            })?;
            if !no_build {
                builder::build_all(&manifest)?;
            }
            // Spin resolves every component's source at load, triggered or not.
            for component in manifest.components.values() {
                anyhow::ensure!(
                    component.source.is_file(),
                    "Failed to load Spin app from {:?}: Failed to load component `{}`: Couldn't resolve {:?}",
                    path.display().to_string(),
                    component.id,
                    component.source.display().to_string()
                );
            }
            let defaults = wasip3::ReuseConfig::default();
            let reuse = wasip3::ReuseConfig {
                max_instance_reuse_count: max_instance_reuse_count
                    .unwrap_or(defaults.max_instance_reuse_count),
                max_instance_concurrent_reuse_count: max_instance_concurrent_reuse_count
                    .unwrap_or(defaults.max_instance_concurrent_reuse_count),
                request_timeout,
                idle_instance_timeout,
            };
            up(&manifest, listen, redis_dir.as_deref(), redis_fsync, reuse)
        }
    }
}

fn up(
    manifest: &Manifest,
    listen: Option<SocketAddr>,
    redis_dir: Option<&std::path::Path>,
    redis_fsync: Fsync,
    reuse: wasip3::ReuseConfig,
) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    // Spin runs the HTTP trigger only for an app that has HTTP triggers; an
    // app of Redis triggers alone listens on no port.
    let serves_http = !manifest.routes.is_empty() || !manifest.private_components.is_empty();
    // `--listen` belongs to Spin's HTTP trigger: `spin up` refuses it for an
    // app of Redis triggers alone.
    anyhow::ensure!(
        serves_http || listen.is_none(),
        "unexpected argument '--listen' found: the app has no HTTP trigger"
    );
    let listen = match listen {
        Some(listen) => listen,
        None => match env("SPIN_HTTP_LISTEN_ADDR") {
            Some(addr) => addr
                .parse()
                .with_context(|| format!("SPIN_HTTP_LISTEN_ADDR: invalid address {addr:?}"))?,
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
        },
    };
    // Start the embedded Redis only when the app declares `redis_address`
    // and nothing gives it a value.
    let wants_embedded = matches!(
        manifest.variables.get(REDIS_ADDRESS),
        Some(decl) if decl.default.is_none() && env(&env_name(REDIS_ADDRESS)).is_none()
    );
    let mut supplied = BTreeMap::new();
    let embedded = if wants_embedded {
        // A throwaway Redis gets throwaway secrets: a required secret with
        // no value, and the Redis's own password, get a random one for this
        // session, so `up` just works for development, while a real
        // deployment must choose its own. With a kept data folder they are
        // kept beside the data, so that what the data was made with (order
        // ids, code digests) still holds after a restart.
        let kept = redis_dir.map(|dir| dir.join(SECRETS_FILE));
        let mut saved = match &kept {
            Some(file) if file.exists() => read_secrets(file)?,
            _ => BTreeMap::new(),
        };
        let before = saved.len();
        let mut session_secret = |name: &str| -> anyhow::Result<String> {
            if let Some(value) = saved.get(name) {
                return Ok(value.clone());
            }
            println!(
                "Generated a random `{name}` for this session (set {} to choose one)",
                env_name(name)
            );
            let value = random_hex(32)?;
            saved.insert(name.to_string(), value.clone());
            Ok(value)
        };
        let password = match env(&env_name(REDIS_PASSWORD)).filter(|p| !p.is_empty()) {
            Some(chosen) => chosen,
            None => session_secret(REDIS_PASSWORD)?,
        };
        let redis = EmbeddedRedis::start(redis_dir, redis_fsync, &password)?;
        match redis.kept_dir() {
            Some(dir) => println!(
                "Started embedded Redis at {} (data kept in {}, fsync {})",
                redis.url,
                dir.display(),
                format!("{redis_fsync:?}").to_lowercase()
            ),
            None => println!(
                "Started embedded Redis at {} (data is discarded on exit)",
                redis.url
            ),
        }
        supplied.insert(REDIS_ADDRESS.to_string(), redis.url.clone());
        if manifest.variables.contains_key(REDIS_PASSWORD) {
            supplied.insert(REDIS_PASSWORD.to_string(), password);
        } else {
            eprintln!(
                "Warning: the embedded Redis requires a password, which the app gets as the \
                 `{REDIS_PASSWORD}` variable; this manifest declares none, so its components \
                 cannot reach it. Declare it, or set {} to a Redis of your own.",
                env_name(REDIS_ADDRESS)
            );
        }
        for (name, decl) in &manifest.variables {
            if decl.required && decl.secret && env(&env_name(name)).is_none() {
                supplied.insert(name.clone(), session_secret(name)?);
            }
        }
        if let Some(file) = kept.filter(|_| saved.len() > before) {
            write_secrets(&file, &saved)?;
        }
        Some(redis)
    } else {
        None
    };
    let variables = AppVariables::resolve(manifest, &supplied, env)?;
    let mut subscriptions = redis_trigger::subscriptions(manifest, &variables)?;
    if let Some(redis) = &embedded {
        // A trigger on the host's own Redis subscribes with its password,
        // which `redis_address` (also an allowed host) cannot carry.
        for subscription in &mut subscriptions {
            if subscription.address == redis.url {
                subscription.address = redis.url_with_password();
            }
        }
    }
    let app = Arc::new(app::App::load(
        manifest,
        &variables,
        reuse,
        server::request_time_limit(),
    )?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if !serves_http {
            return tokio::select! {
                () = shutdown_signal() => Ok(()),
                e = redis_trigger::run(app, subscriptions) => {
                    Err(e.context("A trigger exited unexpectedly. Terminating."))
                }
            };
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("unable to listen on {listen}"))?;
        let bound = listener.local_addr()?;
        print_routes(&app, bound);
        let server = server::Server::new(app.clone(), bound);
        if subscriptions.is_empty() {
            return server.serve(listener, shutdown_signal()).await;
        }
        // A trigger that stops (its Redis went away) stops the app, as
        // Spin's `up` does when one of its triggers exits.
        let triggers = redis_trigger::run(app, subscriptions);
        tokio::pin!(triggers);
        let mut ended = None;
        let stop = async {
            tokio::select! {
                () = shutdown_signal() => {}
                e = &mut triggers => ended = Some(e),
            }
        };
        server.serve(listener, stop).await?;
        match ended {
            Some(e) => Err(e.context("A trigger exited unexpectedly. Terminating.")),
            None => Ok(()),
        }
    })?;
    drop(embedded);
    println!("Stopped");
    Ok(())
}

/// The generated secrets kept beside the embedded Redis's data, one
/// `name=value` a line.
fn read_secrets(file: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

/// Writes the generated secrets, readable by the owner only.
fn write_secrets(file: &std::path::Path, secrets: &BTreeMap<String, String>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    for (name, value) in secrets {
        writeln!(out, "{name}={value}")?;
    }
    Ok(())
}

/// `bytes` random bytes from the OS, as hex.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(buf))
}

fn print_routes(app: &app::App, bound: SocketAddr) {
    let base = format!("http://{bound}");
    println!("\nServing {base}\nAvailable Routes:");
    for route in app.router.routes() {
        match route.based.strip_suffix("/...") {
            Some(prefix) => println!("  {}: {base}{prefix} (wildcard)", route.component),
            None => println!("  {}: {base}{}", route.component, route.based),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
