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
mod router;
mod server;
mod spin_api;
mod state;
mod template;
mod variables;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::embedded_redis::EmbeddedRedis;
use crate::manifest::Manifest;
use crate::variables::{AppVariables, env_name};

/// The variable the embedded Redis fills in when nothing else does.
const REDIS_ADDRESS: &str = "redis_address";

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
        /// Address to listen on.
        #[arg(long, env = "SPIN_HTTP_LISTEN_ADDR", default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Serve the components as they are, without building.
        #[arg(long)]
        no_build: bool,
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
            up(&manifest, listen)
        }
    }
}

fn up(manifest: &Manifest, listen: SocketAddr) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    // Start the embedded Redis only when the app declares `redis_address`
    // and nothing gives it a value.
    let embedded = match manifest.variables.get(REDIS_ADDRESS) {
        Some(decl) if decl.default.is_none() && env(&env_name(REDIS_ADDRESS)).is_none() => {
            let redis = EmbeddedRedis::start()?;
            println!(
                "Started embedded Redis at {} (data is discarded on exit)",
                redis.url
            );
            Some(redis)
        }
        _ => None,
    };
    let mut supplied = BTreeMap::new();
    if let Some(redis) = &embedded {
        supplied.insert(REDIS_ADDRESS.to_string(), redis.url.clone());
        // A throwaway Redis gets throwaway secrets: a required secret with no
        // value gets a random one for this session, so `up` just works for
        // development, while a real deployment must choose its own.
        for (name, decl) in &manifest.variables {
            if decl.required && decl.secret && env(&env_name(name)).is_none() {
                supplied.insert(name.clone(), random_hex(32)?);
                println!(
                    "Generated a random `{name}` for this session (set {} to choose one)",
                    env_name(name)
                );
            }
        }
    }
    let variables = AppVariables::resolve(manifest, &supplied, env)?;
    let app = app::App::load(manifest, &variables)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("unable to listen on {listen}"))?;
        let bound = listener.local_addr()?;
        print_routes(&app, bound);
        let server = server::Server::new(app, bound);
        server.serve(listener, shutdown_signal()).await
    })?;
    drop(embedded);
    println!("Stopped");
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
