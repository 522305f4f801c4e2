//! What each hot Lua script costs Redis, counted in CPU instructions with
//! callgrind: repeatable to about 1% from run to run, unlike timings (see
//! the section on `valgrind --tool=callgrind` in BENCHMARKS.md, which this
//! automates).
//!
//! The test starts its own `redis-server` under `valgrind --tool=callgrind`.
//! For each scenario it makes one call through the core's public API to
//! warm up (script cached, keys in place), zeroes callgrind's counters
//! (`callgrind_control -z`), makes [`CALLS`] more calls on the same
//! connection, dumps the counters (`callgrind_control -d`) and prints the
//! instructions per call as a Markdown table. A call's count is all that
//! `redis-server` did to serve it (reading and parsing the command, the
//! script, writing the reply) and none of the client's work. Redis's timer,
//! `serverCron`, is left out: it runs ten times a second whatever the load
//! (mostly reading jemalloc's statistics), so it would add more the slower
//! the machine.
//!
//! Every scenario is exactly one script (or command) per call, set up so
//! that the same path runs each time: limits so roomy that nothing is
//! refused and each limiter key outlives the run, a fresh buyer for each
//! purchase, and so on.
//!
//! Ignored by default; run it with
//!
//! ```text
//! cargo test -p flashspin-core --test script_cost -- --ignored --nocapture
//! ```
//!
//! It needs `valgrind` (with `callgrind_control`) and `redis-server` on the
//! `PATH`, and passes with a message saying it measured nothing when
//! valgrind is missing.

use flashspin_testkit::block_on;
use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashspin_core::ApiError;
use flashspin_core::client_ip::ClientIp;
use flashspin_core::config::RateLimits;
use flashspin_core::error::Conflict;
use flashspin_core::gate::{self, Access, Buyer, GateRequest};
use flashspin_core::ids::{EPOCH_UNIX_SECS, GoodsId, IdKey, OrderId, ShopId, UserId, VoucherId};
use flashspin_core::keys;
use flashspin_core::login::{self, CodeSettings};
use flashspin_core::lottery::{self, NewGoods, PurchaseFilter};
use flashspin_core::order::{self, EventId, Money, OrderExport, OrderStatus, PayType, Settlement};
use flashspin_core::phone::Phone;
use flashspin_core::ratelimit::{Endpoint, Rate};
use flashspin_core::redis::{Arg, Redis};
use flashspin_core::session::{SessionSettings, SessionToken};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_testkit::{NativeRedis, free_port};

/// Calls counted per scenario, after one to warm up.
const CALLS: u32 = 200;

#[test]
#[ignore = "slow, needs valgrind: run with --ignored --nocapture"]
fn instructions_per_script_call() {
    if !on_path("valgrind") || !on_path("callgrind_control") {
        eprintln!(
            "script_cost: valgrind or callgrind_control is not on the PATH; nothing measured"
        );
        return;
    }
    let server = Callgrind::start();
    let mut redis = server.connect();
    let mut scenarios = scenarios(&mut redis);

    let mut rows = Vec::with_capacity(scenarios.len());
    for (name, call) in &mut scenarios {
        call(&mut redis, 0);
        server.control("-z");
        for i in 1..=CALLS {
            call(&mut redis, i);
        }
        server.control("-d");
        let per_call = server.latest_dump_instructions() as f64 / f64::from(CALLS);
        rows.push((*name, per_call));
    }

    println!(
        "\nRedis {} under callgrind, {CALLS} calls of each after one to warm up, \
         without serverCron; instructions per call, rounded to 1,000:\n",
        server.version(&mut redis)
    );
    println!("| what Redis runs | instructions |");
    println!("| --- | ---: |");
    for (name, per_call) in rows {
        let rounded = (per_call / 1000.0).round() as u64 * 1000;
        println!("| {name} | {} |", thousands(rounded));
    }
}

/// A scenario's name and one call of it; the call is given 0 to warm up,
/// then 1 to [`CALLS`], so it can make each call a new buyer or phone.
/// One call of a scenario, given its number.
type OneCall = Box<dyn FnMut(&mut NativeRedis, u32)>;

type Scenario = (&'static str, OneCall);

/// Every scenario, its data set up through `redis`.
fn scenarios(redis: &mut NativeRedis) -> Vec<Scenario> {
    vec![
        ("`PING`, for scale", Box::new(ping)),
        (
            "gate, purchase: session, 3 limits, order number",
            gate_purchase(redis),
        ),
        ("gate, public read: no token, 2 limits", gate_public()),
        (
            "`buy_voucher.lua`, bought",
            voucher_bought(redis, OrderExport::Off),
        ),
        (
            "`buy_voucher.lua`, bought, exported (exporter awake)",
            voucher_bought(redis, OrderExport::On),
        ),
        ("`buy_voucher.lua`, sold out", voucher_sold_out(redis)),
        (
            "`buy_voucher.lua`, already bought",
            voucher_already_bought(redis),
        ),
        (
            "`buy_lottery.lua`, 3 shares of 10,000,000",
            lottery_bought(redis, lottery::MAX_SHARES),
        ),
        (
            "`buy_lottery.lua`, 3 shares of 4^11",
            lottery_bought(redis, POWER_OF_4),
        ),
        ("`voucher_read.lua`, nothing due", voucher_read(redis)),
        (
            "`order_change.lua`, a webhook paying an order",
            order_paid(redis, OrderExport::Off),
        ),
        (
            "`order_change.lua`, the same, exported (exporter awake)",
            order_paid(redis, OrderExport::On),
        ),
        ("`lottery_read.lua`, current period", lottery_read(redis)),
        (
            "`lottery_mine.lua`, a user's 3 purchases of 3 shares",
            lottery_mine(redis),
        ),
        ("`login.lua`, wrong code", login_wrong_code(redis)),
        (
            "`send_code.lua`, a phone's first code",
            send_code_new_phone(),
        ),
    ]
}

fn ping(redis: &mut NativeRedis, _: u32) {
    block_on(redis.execute("PING", &[])).unwrap();
}

/// The gate of a purchase endpoint, as a signed-in user.
fn gate_purchase(redis: &mut NativeRedis) -> OneCall {
    let token = sign_in(redis, &phone(0));
    Box::new(move |redis, _| {
        let request = GateRequest {
            endpoint: Endpoint::BuyVoucher,
            token: Some(&token),
            ip: Some(client_ip()),
            limits: roomy_limits(),
            session: SESSION,
            shards: Shards::ONE,
        };
        let vars = HashMap::from([("id_secret", "cost")]);
        let admitted = block_on(gate::admit::<Buyer>(redis, &request, &vars)).unwrap();
        assert!(admitted.verdict.allowed);
    })
}

/// The gate of a public endpoint, for a client without a token.
fn gate_public() -> OneCall {
    Box::new(|redis, _| {
        let request = GateRequest {
            endpoint: Endpoint::Catalog,
            token: None,
            ip: Some(client_ip()),
            limits: roomy_limits(),
            session: SESSION,
            shards: Shards::ONE,
        };
        let passed = block_on(gate::pass(redis, Access::Public, &request)).unwrap();
        assert!(passed.user.is_none());
    })
}

/// A new buyer each call (one order per user), with stock for all.
fn voucher_bought(redis: &mut NativeRedis, export: OrderExport) -> OneCall {
    let id = on_sale_voucher(redis, i64::from(CALLS) + 1);
    exporter_awake(redis, id);
    Box::new(move |redis, i| {
        let buyer = user(u64::from(i) + 1);
        block_on(voucher::buy(
            redis,
            id,
            buyer,
            order_id(i + 1),
            PAY_SECS,
            export,
            Shards::ONE,
            &mut 1,
        ))
        .unwrap();
    })
}

/// The exporter already woken for the voucher's outbox, for longer than a
/// run: every exported change takes the same path, its event appended
/// without a wake-up (which is one `PUBLISH` more, once a second at most).
fn exporter_awake(redis: &mut NativeRedis, id: VoucherId) {
    let wake = keys::voucher_export_wake(id);
    let args = [
        Arg::from(wake.as_str()),
        Arg::from("1"),
        Arg::from("PX"),
        Arg::Int(3_600_000),
    ];
    block_on(redis.execute("SET", &args)).unwrap();
}

/// A new buyer each call, after the only unit has gone.
fn voucher_sold_out(redis: &mut NativeRedis) -> OneCall {
    let id = on_sale_voucher(redis, 1);
    block_on(voucher::buy(
        redis,
        id,
        user(1_000_000),
        order_id(1),
        PAY_SECS,
        OrderExport::Off,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    Box::new(move |redis, i| {
        let refused = block_on(voucher::buy(
            redis,
            id,
            user(u64::from(i) + 1),
            order_id(i + 2),
            PAY_SECS,
            OrderExport::Off,
            Shards::ONE,
            &mut 1,
        ));
        assert_eq!(refused, Err(ApiError::Conflict(Conflict::SoldOut)));
    })
}

/// A voucher with unpaid orders, none of them due, read.
fn voucher_read(redis: &mut NativeRedis) -> OneCall {
    let id = on_sale_voucher(redis, 10);
    block_on(voucher::buy(
        redis,
        id,
        user(1),
        order_id(1),
        PAY_SECS,
        OrderExport::Off,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    Box::new(move |redis, _| {
        assert_eq!(
            block_on(voucher::get(redis, id, OrderExport::Off))
                .unwrap()
                .unwrap()
                .remaining,
            9
        );
    })
}

/// A payment event for a new order each call, as the webhook sends it.
fn order_paid(redis: &mut NativeRedis, export: OrderExport) -> OneCall {
    let id = on_sale_voucher(redis, i64::from(CALLS) + 2);
    exporter_awake(redis, id);
    let orders: Vec<OrderId> = (0..=CALLS)
        .map(|i| {
            let bought = block_on(voucher::buy(
                redis,
                id,
                user(u64::from(i) + 1),
                order_id(i + 1),
                PAY_SECS,
                OrderExport::Off,
                Shards::ONE,
                &mut 1,
            ));
            bought.unwrap().id
        })
        .collect();
    Box::new(move |redis, i| {
        let event = EventId::parse(&format!("evt_{i}")).unwrap();
        let pay = Money::Paid {
            amount: 100,
            pay_type: PayType::Card,
        };
        let paid = block_on(order::settle(
            redis,
            id,
            orders[i as usize],
            &event,
            pay,
            export,
        ))
        .unwrap();
        assert!(paid.settlement == Settlement::Paid && !paid.replayed);
        let paid = paid.order;
        assert_eq!(paid.status, OrderStatus::Paid);
    })
}

/// The same buyer again and again, after their one purchase.
fn voucher_already_bought(redis: &mut NativeRedis) -> OneCall {
    let id = on_sale_voucher(redis, 10);
    block_on(voucher::buy(
        redis,
        id,
        user(1),
        order_id(1),
        PAY_SECS,
        OrderExport::Off,
        Shards::ONE,
        &mut 1,
    ))
    .unwrap();
    Box::new(move |redis, i| {
        let refused = block_on(voucher::buy(
            redis,
            id,
            user(1),
            order_id(i + 2),
            PAY_SECS,
            OrderExport::Off,
            Shards::ONE,
            &mut 1,
        ));
        assert!(
            matches!(refused, Err(ApiError::AlreadyPurchased(_))),
            "{refused:?}"
        );
    })
}

/// 3 shares of goods of `total_shares` for a new buyer each call, with a
/// new purchase id. With 10,000,000 shares the count varies by about 1%
/// from run to run (see [`POWER_OF_4`]); with a power of 4 it does not.
fn lottery_bought(redis: &mut NativeRedis, total_shares: i64) -> OneCall {
    let id = block_on(lottery::create(redis, &goods(total_shares))).unwrap();
    Box::new(move |redis, i| {
        let buyer = user(u64::from(i) + 1);
        let purchase = block_on(lottery::buy(
            redis,
            id,
            buyer,
            &pseudonyms(),
            3,
            order_id(i + 1),
            None,
        ))
        .unwrap();
        assert_eq!(purchase.codes.len(), 3);
    })
}

/// The open period of a goods with a few purchases.
fn lottery_read(redis: &mut NativeRedis) -> OneCall {
    let id = goods_with_purchases(redis);
    Box::new(move |redis, _| {
        let period = block_on(lottery::read(redis, id, 0)).unwrap().unwrap();
        assert_eq!(period.sold, 9);
    })
}

/// The purchases of a user who bought 3 times, one goods asked for (so one
/// script and no read of the user's goods list).
fn lottery_mine(redis: &mut NativeRedis) -> OneCall {
    let id = goods_with_purchases(redis);
    let filter = PurchaseFilter {
        goods: Some(id),
        period: None,
    };
    Box::new(move |redis, _| {
        let (page, next) = block_on(lottery::purchases_page(
            redis,
            Shards::ONE,
            user(LOTTERY_BUYER),
            filter,
            None,
            20,
        ))
        .unwrap();
        assert_eq!((page.len(), next), (3, None));
    })
}

/// A wrong code for a phone with a code outstanding.
fn login_wrong_code(redis: &mut NativeRedis) -> OneCall {
    let phone = phone(1);
    let ip = client_ip();
    let sent = block_on(login::send_code(
        redis,
        &phone,
        Some(&ip),
        &CODES,
        &roomy_limits(),
        Shards::ONE,
    ))
    .unwrap();
    let wrong = if sent.code.reveal() == "000000" {
        "111111"
    } else {
        "000000"
    };
    Box::new(move |redis, _| {
        let refused = block_on(login::login(
            redis,
            &phone,
            wrong,
            Some(&ip),
            &CODES,
            &SESSION,
            &roomy_limits(),
            Shards::ONE,
        ));
        assert!(matches!(refused, Err(ApiError::InvalidCode)), "{refused:?}");
    })
}

/// A code for a new phone each call, so no resend gap applies.
fn send_code_new_phone() -> OneCall {
    Box::new(|redis, i| {
        let phone = phone(1000 + i);
        block_on(login::send_code(
            redis,
            &phone,
            Some(&client_ip()),
            &CODES,
            &roomy_limits(),
            Shards::ONE,
        ))
        .unwrap();
    })
}

// --- Data -----------------------------------------------------------------

const SESSION: SessionSettings = SessionSettings {
    idle_secs: 1800,
    max_secs: 604_800,
};

/// Login settings that refuse nothing in a run: wrong codes without end,
/// and a per-IP hourly cap of one code a second, so its key outlives the
/// run like those of [`roomy_limits`].
const CODES: CodeSettings = CodeSettings {
    ttl_secs: 300,
    resend_secs: 60,
    max_attempts: 1_000_000,
    max_attempts_per_phone: 1_000_000,
    daily_per_phone: 10,
    hourly_per_ip: 3_600,
    key: [7; 32],
};

/// One request a second for a million seconds, for every limit: nothing is
/// refused, and each limiter's key outlives the run, so every call takes
/// the path of steady load (the key read and rewritten) rather than
/// finding it expired.
fn roomy_limits() -> RateLimits {
    let rate = Rate::new(1_000_000, 1_000_000).unwrap();
    RateLimits {
        user: rate,
        ip: rate,
        global: rate,
    }
}

fn client_ip() -> ClientIp {
    ClientIp(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
}

fn phone(n: u32) -> Phone {
    Phone::parse(&format!("138{n:08}")).unwrap()
}

/// A session token for `phone`, through the login scripts.
fn sign_in(redis: &mut NativeRedis, phone: &Phone) -> SessionToken {
    let sent = block_on(login::send_code(
        redis,
        phone,
        None,
        &CODES,
        &roomy_limits(),
        Shards::ONE,
    ))
    .unwrap();
    let code = sent.code.reveal();
    block_on(login::login(
        redis,
        phone,
        code,
        None,
        &CODES,
        &SESSION,
        &roomy_limits(),
        Shards::ONE,
    ))
    .unwrap()
    .token
}

fn user(id: u64) -> UserId {
    UserId::new(id).unwrap()
}

/// How long buyers have to pay.
const PAY_SECS: u32 = 900;

fn order_id(sequence: u32) -> OrderId {
    OrderId::new(
        EPOCH_UNIX_SECS + 1000,
        sequence,
        Shards::ONE.first(),
        Shards::ONE,
        &IdKey::from_secret("cost"),
    )
    .unwrap()
}

/// A voucher on sale now, with `stock` units.
fn on_sale_voucher(redis: &mut NativeRedis, stock: i64) -> VoucherId {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let new = NewVoucher {
        shop_id: ShopId::new(1).unwrap(),
        title: "voucher".into(),
        sub_title: String::new(),
        rules: String::new(),
        pay_value: 100,
        actual_value: 150,
        stock,
        begin_ms: now_ms - 60_000,
        end_ms: now_ms + 24 * 3_600_000,
        parts: 1,
    };
    block_on(voucher::create(redis, new)).unwrap().id
}

/// Lottery goods of `total_shares` shares.
fn goods(total_shares: i64) -> NewGoods {
    NewGoods {
        title: "goods".into(),
        total_shares,
        share_price: 100,
        code_base: 10_000_001,
        max_periods: None,
    }
}

/// 4^11 shares. A code is its share's index put through a keyed
/// permutation of 0..4^k, the smallest power of 4 not below the total,
/// again until it lands below the total (`perm.lua`). How often depends on
/// the goods' random seed, so with 10,000,000 shares the cost of a code
/// varies from run to run (3 codes a call: about 1% over 200 calls; the
/// same 9 codes read again and again: 10%). With a power of 4 every code
/// takes one pass.
const POWER_OF_4: i64 = 1 << 22;

/// The key of buyers' pseudonyms in these purchases.
fn pseudonyms() -> lottery::PseudonymKey {
    lottery::PseudonymKey::from_secret("t")
}

/// Who bought shares in [`goods_with_purchases`].
const LOTTERY_BUYER: u64 = 7;

/// New goods of [`POWER_OF_4`] shares in which [`LOTTERY_BUYER`] bought 3
/// shares, 3 times.
fn goods_with_purchases(redis: &mut NativeRedis) -> GoodsId {
    let id = block_on(lottery::create(redis, &goods(POWER_OF_4))).unwrap();
    for n in 1..=3 {
        block_on(lottery::buy(
            redis,
            id,
            user(LOTTERY_BUYER),
            &pseudonyms(),
            3,
            order_id(n),
            None,
        ))
        .unwrap();
    }
    id
}

// --- Callgrind ------------------------------------------------------------

/// `redis-server` under callgrind, on a free port, killed when dropped.
struct Callgrind {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl Callgrind {
    fn start() -> Self {
        let dir = ScratchDir::new();
        let port = free_port();
        let child = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!(
                "--callgrind-out-file={}",
                dir.0.join("cg.%p").display()
            ))
            .arg(format!(
                "--log-file={}",
                dir.0.join("valgrind.log").display()
            ))
            .arg("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("valgrind runs");
        let mut server = Self { child, port, dir };
        server.wait_ready();
        server
    }

    /// Waits for `PING` to be answered by our own child: the port was free
    /// when chosen, but something else may have bound it since. Slow under
    /// valgrind.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "redis-server under valgrind exited ({status}); is redis-server on the PATH? {}",
                    fs::read_to_string(self.dir.0.join("valgrind.log")).unwrap_or_default()
                );
            }
            if let Ok(mut conn) = self.client().get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap();
                assert_eq!(
                    info_field(&info, "process_id"),
                    Some(self.child.id().to_string().as_str()),
                    "another server answers on port {}",
                    self.port
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server under valgrind did not answer PING within 60 s");
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap()
    }

    fn connect(&self) -> NativeRedis {
        NativeRedis(self.client().get_connection().unwrap())
    }

    fn version(&self, redis: &mut NativeRedis) -> String {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut redis.0)
            .unwrap();
        info_field(&info, "redis_version")
            .unwrap_or("?")
            .to_string()
    }

    /// `callgrind_control <option> <pid>`; under valgrind the server's pid
    /// is the child's.
    fn control(&self, option: &str) {
        let status = Command::new("callgrind_control")
            .arg(option)
            .arg(self.child.id().to_string())
            .output()
            .expect("callgrind_control runs");
        assert!(
            status.status.success(),
            "callgrind_control {option}: {}\n{}",
            status.status,
            String::from_utf8_lossy(&status.stderr)
        );
    }

    /// The instructions in the newest dump (`cg.<pid>.<n>`, highest n)
    /// outside `serverCron`.
    fn latest_dump_instructions(&self) -> u64 {
        let prefix = format!("cg.{}.", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let newest = fs::read_dir(&self.dir.0)
                .unwrap()
                .filter_map(|entry| {
                    let name = entry.unwrap().file_name().into_string().ok()?;
                    name.strip_prefix(&prefix)?.parse::<u32>().ok()
                })
                .max();
            if let Some(n) = newest {
                let dump = fs::read_to_string(self.dir.0.join(format!("{prefix}{n}"))).unwrap();
                if let Some(count) = instructions_outside_cron(&dump) {
                    return count;
                }
            }
            assert!(Instant::now() < deadline, "no complete callgrind dump");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Callgrind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The instructions (`Ir`, the only event counted) in a callgrind dump, less
/// everything `serverCron` and what it called ran; `None` until the dump is
/// complete (its `totals:` line written).
///
/// In the dump every cost line after `fn=` belongs to that function: its own
/// cost, or after a `calls=` line the whole cost of that call. Names are
/// compressed: `(id) name` the first time, `(id)` after, in `fn=` and `cfn=`
/// lines alike.
fn instructions_outside_cron(dump: &str) -> Option<u64> {
    let mut positions = 1;
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut in_cron = false;
    let mut cron = 0;
    let mut totals = None;
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix("positions:") {
            positions = rest.split_whitespace().count();
        } else if let Some(rest) = line.strip_prefix("totals:") {
            totals = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
        } else if let Some(rest) = line.strip_prefix("fn=") {
            in_cron = function_name(rest, &mut names) == "serverCron";
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            function_name(rest, &mut names);
        } else if in_cron && line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            cron += line
                .split_whitespace()
                .nth(positions)
                .map_or(0, |n| n.parse::<u64>().unwrap());
        }
    }
    totals.map(|total| total - cron)
}

/// The name in a `fn=` or `cfn=` line, noting compressed names.
fn function_name<'a>(spec: &'a str, names: &mut HashMap<&'a str, &'a str>) -> &'a str {
    let Some(rest) = spec.strip_prefix('(') else {
        return spec;
    };
    let (id, name) = rest.split_once(')').unwrap();
    let name = name.trim_start();
    if name.is_empty() {
        names.get(id).copied().unwrap_or("")
    } else {
        names.insert(id, name);
        name
    }
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A directory of our own under the system's temporary directory, removed
/// when dropped (the core has no `tempfile` dependency).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "flashspin-script-cost-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir(&path).unwrap();
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
