//! `flashspin-upgrade`: changes how many shards the gate's keys are split
//! over (`redis_shards`) under an existing shop, with the app stopped. See
//! docs/CONFIGURATION.md, "Changing redis_shards".

use std::process::ExitCode;

use clap::Parser;
use flashspin_core::shard::Shards;

#[derive(Parser)]
#[command(
    about = "Moves the gate's keys to another redis_shards count; run it with the app stopped"
)]
struct Args {
    /// The shop's Redis, or one node of its cluster:
    /// redis://[:password@]host:port (from the environment, so that a
    /// password stays out of the process list).
    #[arg(long, env = "FLASHSPIN_REDIS_URL", hide_env_values = true)]
    redis: String,
    /// The address is a node of a Redis Cluster: every primary is searched.
    #[arg(long)]
    cluster: bool,
    /// The count the shop's data has now (redis_shards: 1, 4, 16 or 64).
    #[arg(long)]
    from_shards: u32,
    /// The count to move it to.
    #[arg(long)]
    to_shards: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (Some(from), Some(to)) = (Shards::new(args.from_shards), Shards::new(args.to_shards))
    else {
        eprintln!("redis_shards is one of 1, 4, 16, 64");
        return ExitCode::from(2);
    };
    match flashspin_native::upgrade_gate(&args.redis, args.cluster, from, to) {
        Ok(report) => {
            println!(
                "moved {} keys, dropped {} (sessions, codes, limiters, sequences), left {}; \
                 new user ids start above {}",
                report.moved, report.dropped, report.kept, report.highest_user
            );
            println!("now set redis_shards = {} and start the app", to.count());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("upgrade stopped: {e}; it is safe to run again");
            ExitCode::FAILURE
        }
    }
}
