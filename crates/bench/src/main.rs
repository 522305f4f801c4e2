//! `flashspin-bench`: drives the app with concurrent requests, scenario by
//! scenario, and reports throughput, latency percentiles, status counts and
//! Redis commands per request, each scenario also relative to the
//! `baseline` (an endpoint doing exactly one Redis round trip). Writes
//! `results.md` and `results.png` to `--out`. See BENCHMARKS.md.

mod chart;
mod drive;
mod export;
mod link;
mod report;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flashspin_testkit::PostgresServer;
use flashspin_testkit::api::{Client, OrderBody};

use crate::drive::{Limit, Request, Step};
use crate::report::Measured;
use crate::target::{Counters, Serving, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `GET /api/health`: one Redis round trip, the floor for any endpoint.
    Baseline,
    /// A voucher with far less stock than demand: mostly refusals.
    BuyVoucherScarce,
    /// Vouchers with more stock than demand: every request buys.
    BuyVoucherPlenty,
    /// Every purchase then paid through the payment webhook (two requests
    /// per unit of work).
    BuyVoucherPay,
    /// A voucher of little stock whose buyers never pay: each order expires
    /// after a second and its unit is sold again (a second app with
    /// `order_pay_secs` = 1).
    BuyVoucherExpire,
    /// Lottery shares, 1 to 5 at a time; periods sell out and draw.
    Lottery,
    /// Send a code, then log in with it (two requests per flow).
    Login,
    /// The probe fixture sending one `PING`: the baseline's floor measured
    /// with the component used for `two-pings`.
    OnePing,
    /// The probe fixture sending two `PING`s: the floor for any endpoint
    /// of two round trips, such as a purchase.
    TwoPings,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::BuyVoucherScarce => "buy-voucher (scarce)",
            Scenario::BuyVoucherPlenty => "buy-voucher (plenty)",
            Scenario::BuyVoucherPay => "buy-voucher, then pay",
            Scenario::BuyVoucherExpire => "buy-voucher (orders expire)",
            Scenario::Lottery => "buy-lottery-shares",
            Scenario::Login => "login flow",
            Scenario::OnePing => "probe, 1 PING",
            Scenario::TwoPings => "probe, 2 PINGs",
        }
    }

    /// Served by the probe app rather than the app itself.
    fn on_probe(self) -> bool {
        matches!(self, Scenario::OnePing | Scenario::TwoPings)
    }
}

#[derive(Parser)]
#[command(about = "Load benchmark for the Flashspin app")]
struct Args {
    /// Scenarios to run; the baseline always runs first.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [
        Scenario::BuyVoucherScarce, Scenario::BuyVoucherPlenty, Scenario::BuyVoucherPay,
        Scenario::BuyVoucherExpire, Scenario::Lottery, Scenario::Login,
        Scenario::OnePing, Scenario::TwoPings,
    ])]
    scenarios: Vec<Scenario>,
    /// Seconds per scenario (split over the rounds).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop each scenario after this many requests instead of a time
    /// (split over the rounds, each round's share rounded up).
    #[arg(long)]
    requests: Option<u64>,
    /// Runs every scenario this many times in turn, each for its share of
    /// the time, and adds the slices up. Interleaving keeps a slow spell of
    /// a shared machine from landing on one scenario only, so the ratios to
    /// the baseline stay comparable.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Signed-in users to spread purchases over.
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// Where results.md and results.png go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// The host that serves the app: `flashspin` (built in release mode
    /// when missing), or a real Spin binary (a file named `spin...`).
    #[arg(long, default_value = "target/release/flashspin")]
    host: PathBuf,
    /// The app's manifest: `spin.toml` (the WASI 0.2 build) or
    /// `spin.wasip3.toml` (the WASI 0.3 build).
    #[arg(long, default_value = "spin.toml")]
    manifest: String,
    /// Puts Redis this many milliseconds away from the app, each way, with
    /// a delaying proxy: with `--concurrency 1`, a request's latency over
    /// the round trip time is the round trips it made.
    #[arg(long, conflicts_with = "url")]
    redis_delay_ms: Option<u64>,
    /// Serves the app from a Redis Cluster of this many primaries (started
    /// here, on loopback) instead of one Redis, and reports each node's
    /// share of Redis's CPU.
    #[arg(long, conflicts_with_all = ["url", "redis_delay_ms", "export"])]
    redis_cluster: Option<usize>,
    /// Benchmark an app that is already running at this URL instead. It must
    /// send SMS to --sink-port and use the Redis at --redis and the admin
    /// key in FLASHSPIN_BENCH_ADMIN_KEY. The probe scenarios are skipped.
    #[arg(long, requires_all = ["redis", "sink_port"])]
    url: Option<String>,
    /// With --url: the app's Redis, for INFO commandstats.
    #[arg(long)]
    redis: Option<String>,
    /// With --url: the loopback port to receive the app's SMS on.
    #[arg(long)]
    sink_port: Option<u16>,
    /// Export every order to a private PostgreSQL while the scenarios run,
    /// with the exporter app (`export.toml`) beside the app, and report the
    /// export lag. The expiring-orders app does not export.
    #[arg(long, conflicts_with = "url")]
    export: bool,
    /// With --export, leave the exporter out: the scripts write the outbox
    /// and nothing reads it, which isolates what the purchase path itself
    /// pays for exporting. No lag is reported.
    #[arg(long, requires = "export")]
    outbox_only: bool,
    /// Split the stock of the scarce scenario's one voucher into this many
    /// parts (`parts` of `POST /api/admin/vouchers`): the hot voucher on a
    /// Redis Cluster.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    hot_voucher_parts: Option<u8>,
    #[arg(
        long,
        env = "FLASHSPIN_BENCH_ADMIN_KEY",
        default_value = "bench-admin-key"
    )]
    admin_key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let serving = Serving {
        host: args.host.clone(),
        manifest: args.manifest.clone(),
        redis_delay: args.redis_delay_ms.map(Duration::from_millis),
        redis_cluster: args.redis_cluster,
    };
    let pg = args.export.then(PostgresServer::start);
    let pg_vars: Vec<(&'static str, String)> = match &pg {
        Some(pg) => vec![
            ("pg_address", pg.url()),
            ("pg_host", format!("127.0.0.1:{}", pg.port)),
        ],
        None => Vec::new(),
    };
    let pg_vars: Vec<(&'static str, &str)> =
        pg_vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut target = match &args.url {
        Some(url) => {
            Target::existing(
                url,
                args.redis.as_deref().unwrap_or_default(),
                args.sink_port.unwrap_or_default(),
                &args.admin_key,
            )
            .await?
        }
        None => Target::start(&serving, &args.admin_key, &pg_vars).await?,
    };
    target.hot_voucher_parts = args.hot_voucher_parts;
    let _exporter = match &pg {
        Some(pg) if !args.outbox_only => {
            let pg_host = format!("127.0.0.1:{}", pg.port);
            Some(
                target
                    .start_exporter(&args.host, &pg.url(), &pg_host)
                    .await?,
            )
        }
        _ => None,
    };
    println!("Signing in {} users ...", args.users);
    let tokens = Arc::new(target.sign_in_users(args.users).await?);
    let rounds = args.rounds.max(1);
    let limit = match args.requests {
        Some(n) => Limit::Requests(n.div_ceil(u64::from(rounds))),
        None => Limit::Time(Duration::from_secs(args.duration) / rounds),
    };

    let mut scenarios = vec![Scenario::Baseline];
    scenarios.extend(
        args.scenarios
            .iter()
            .copied()
            .filter(|s| *s != Scenario::Baseline)
            .filter(|s| args.url.is_none() || !s.on_probe()),
    );
    let probe = if scenarios.iter().any(|s| s.on_probe()) {
        Some(target.start_probe(&args.host).await?)
    } else {
        None
    };
    // Orders that expire in a second would change every other voucher
    // scenario, so they get an app of their own, with its own users.
    let expiring = if args.url.is_none() && scenarios.contains(&Scenario::BuyVoucherExpire) {
        let app = Target::start(&serving, &args.admin_key, &[("order_pay_secs", "1")]).await?;
        let tokens = Arc::new(app.sign_in_users(args.users).await?);
        Some((app, tokens))
    } else {
        None
    };
    scenarios.retain(|s| *s != Scenario::BuyVoucherExpire || expiring.is_some());
    let target_of = |scenario: Scenario| match (&probe, &expiring, scenario) {
        (Some(probe), _, s) if s.on_probe() => probe,
        (_, Some((app, _)), Scenario::BuyVoucherExpire) => app,
        _ => &target,
    };
    let tokens_of = |scenario: Scenario| match (&expiring, scenario) {
        (Some((_, tokens)), Scenario::BuyVoucherExpire) => tokens.clone(),
        _ => tokens.clone(),
    };
    let mut runs = Vec::new();
    for &scenario in &scenarios {
        runs.push(Run {
            scenario,
            request: prepare(target_of(scenario), scenario, tokens_of(scenario)).await?,
            samples: Vec::new(),
            elapsed: Duration::ZERO,
            counters: Counters::default(),
        });
    }
    for round in 1..=rounds {
        if rounds > 1 {
            println!("Round {round} of {rounds}");
        }
        for run in &mut runs {
            let target = target_of(run.scenario);
            let before = target.counters()?;
            let (samples, elapsed) = drive::run(
                &target.api,
                run.scenario.name(),
                args.concurrency,
                limit,
                run.request.clone(),
                run.samples.len() as u64,
            )
            .await;
            let after = target.counters()?;
            run.samples.extend(samples);
            run.elapsed += elapsed;
            run.counters.add(&before.delta(&after));
        }
    }
    let scenarios: Vec<Scenario> = runs.iter().map(|run| run.scenario).collect();
    let results: Vec<Measured> = runs
        .into_iter()
        .map(|run| Measured::new(run.scenario.name(), run.samples, run.elapsed, run.counters))
        .collect();
    for measured in &results {
        println!("{}", measured.one_line());
    }

    std::fs::create_dir_all(&args.out)?;
    let mut table = format!(
        "{} with `{}`{}.\n\n",
        args.url.as_deref().map_or_else(
            || args
                .host
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            |url| url.to_string()
        ),
        args.manifest,
        serving.redis_delay.map_or(String::new(), |d| format!(
            ", Redis {} ms away each way",
            d.as_millis()
        )),
    );
    table.push_str(&report::markdown(&results, args.concurrency, args.users));
    if let Some(delay) = serving.redis_delay {
        table.push_str(&report::round_trips_by_latency(&results, delay));
    }
    if let Some(primaries) = serving.redis_cluster {
        table.insert_str(0, &format!("On a Redis Cluster of {primaries} primaries. "));
        let shares = report::node_shares(&results);
        println!("{shares}");
        table.push_str(&shares);
    }
    let of = |wanted: Scenario| {
        let at = scenarios.iter().position(|s| *s == wanted)?;
        results.get(at)
    };
    if let (Some(one), Some(two)) = (of(Scenario::OnePing), of(Scenario::TwoPings)) {
        table.push_str(&report::second_round_trip(one, two));
    }
    if let Some(pg) = pg.as_ref().filter(|_| !args.outbox_only) {
        let lag = export::measure(&target, pg).await?;
        println!("{}", lag.one_line());
        table.push_str(&lag.markdown());
    }
    std::fs::write(args.out.join("results.md"), &table)?;
    chart::render(&results, &args.out.join("results.png"))?;
    println!(
        "\n{table}\nWrote {} and {}",
        args.out.join("results.md").display(),
        args.out.join("results.png").display()
    );
    Ok(())
}

/// A scenario's slices so far.
struct Run {
    scenario: Scenario,
    request: Request,
    samples: Vec<drive::Sample>,
    elapsed: Duration,
    counters: Counters,
}

/// 200 vouchers with a large stock. Each user buys each voucher once, so
/// they allow 200 x users purchases before anyone is refused.
async fn plenty_vouchers(target: &Target) -> anyhow::Result<Vec<String>> {
    let mut vouchers = Vec::new();
    for _ in 0..200 {
        vouchers.push(target.create_voucher(1_000_000).await?);
    }
    Ok(vouchers)
}

/// Sets up what a scenario needs and returns how to make its i-th unit of
/// work.
async fn prepare(
    target: &Target,
    scenario: Scenario,
    tokens: Arc<Vec<String>>,
) -> anyhow::Result<Request> {
    let users = tokens.len() as u64;
    // Signed in as user i.
    let token = move |i: u64| tokens[(i % users) as usize].clone();
    Ok(match scenario {
        Scenario::Baseline => Arc::new(move |_| {
            vec![Box::new(|api: &Client, _: &[u8]| api.health().into_builder()) as Step]
        }),
        Scenario::BuyVoucherScarce => {
            let voucher = target
                .create_voucher_in_parts(100, target.hot_voucher_parts)
                .await?;
            Arc::new(move |i| {
                let (token, voucher) = (token(i), voucher.clone());
                vec![Box::new(move |api: &Client, _: &[u8]| {
                    api.buy_voucher(&token, &voucher).into_builder()
                }) as Step]
            })
        }
        Scenario::BuyVoucherPlenty => {
            let vouchers = plenty_vouchers(target).await?;
            Arc::new(move |i| {
                let token = token(i);
                let voucher = vouchers[((i / users) % 200) as usize].clone();
                vec![Box::new(move |api: &Client, _: &[u8]| {
                    api.buy_voucher(&token, &voucher).into_builder()
                }) as Step]
            })
        }
        Scenario::BuyVoucherPay => {
            // As plenty, on vouchers of their own; each order is paid at
            // once, with a webhook signed as the provider signs it.
            let vouchers = plenty_vouchers(target).await?;
            Arc::new(move |i| {
                let token = token(i);
                let voucher = vouchers[((i / users) % 200) as usize].clone();
                vec![
                    Box::new(move |api: &Client, _: &[u8]| {
                        api.buy_voucher(&token, &voucher).into_builder()
                    }) as Step,
                    Box::new(move |api: &Client, bought: &[u8]| {
                        let order = serde_json::from_slice::<OrderBody>(bought)
                            .map(|b| b.order.id)
                            .unwrap_or_default();
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let event = serde_json::json!({
                            "event_id": format!("evt_{order}"),
                            "type": "payment.succeeded",
                            "order_id": order,
                            "amount": target::VOUCHER_PAY_VALUE,
                            "pay_type": "card",
                        });
                        api.payment_webhook(target::WEBHOOK_SECRET, now, &event)
                            .into_builder()
                    }),
                ]
            })
        }
        Scenario::BuyVoucherExpire => {
            let voucher = target.create_voucher(100).await?;
            Arc::new(move |i| {
                let (token, voucher) = (token(i), voucher.clone());
                vec![Box::new(move |api: &Client, _: &[u8]| {
                    api.buy_voucher(&token, &voucher).into_builder()
                }) as Step]
            })
        }
        Scenario::Lottery => {
            let goods = target.create_goods(10_000).await?;
            Arc::new(move |i| {
                let (token, goods) = (token(i), goods.clone());
                let count = 1 + (i % 5) as i64;
                vec![Box::new(move |api: &Client, _: &[u8]| {
                    api.buy_shares(&token, &goods, count, None).into_builder()
                }) as Step]
            })
        }
        Scenario::OnePing | Scenario::TwoPings => {
            let n = if scenario == Scenario::OnePing { 1 } else { 2 };
            Arc::new(move |_| {
                let path = format!("/api/floor?action=pings&n={n}");
                vec![Box::new(move |api: &Client, _: &[u8]| api.get(&path).into_builder()) as Step]
            })
        }
        Scenario::Login => {
            // The sign-in flow, one request per step so that each is timed
            // and counted like any other.
            let sink = target.sink.clone();
            Arc::new(move |i| {
                let phone = format!("166{:08}", i % 100_000_000);
                let send_phone = phone.clone();
                let sink = sink.clone();
                vec![
                    Box::new(move |api: &Client, _: &[u8]| {
                        api.send_code(&send_phone).into_builder()
                    }) as Step,
                    // Built after the first step: the code has arrived by then.
                    Box::new(move |api: &Client, _: &[u8]| {
                        let code = sink.last_code(&phone).unwrap_or_default();
                        api.login(&phone, &code).into_builder()
                    }),
                ]
            })
        }
    })
}
