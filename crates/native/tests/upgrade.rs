//! The documented upgrade of a shop running on one Redis with one gate
//! shard to a 3-primary Redis Cluster with 16, on real servers: the data is
//! copied with `redis-cli --cluster import`, `flashspin_native::upgrade_gate`
//! (what `flashspin-upgrade` runs) moves the gate's keys, and then every
//! user signs in again as themselves, finds their orders, and every order
//! is found by its id; new users get ids no old user has; running it again
//! changes nothing.

use std::collections::HashMap;
use std::process::Command;

use flashspin_core::ApiError;
use flashspin_core::config::RateLimits;
use flashspin_core::gate::{self, Buyer, GateRequest};
use flashspin_core::ids::{GoodsId, OrderId, ShopId, UserId, VoucherId};
use flashspin_core::keys;
use flashspin_core::login::{CodeSettings, login, send_code};
use flashspin_core::lottery;
use flashspin_core::order::{self, OrderExport};
use flashspin_core::phone::Phone;
use flashspin_core::ratelimit::{Endpoint, Rate};
use flashspin_core::redis::{Arg, Redis, Reply};
use flashspin_core::session::{SessionSettings, SessionToken};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_native::{block_on, upgrade_gate};
use flashspin_testkit::{RedisCluster, RedisServer};

const SETTINGS: CodeSettings = CodeSettings {
    ttl_secs: 300,
    resend_secs: 60,
    max_attempts: 5,
    max_attempts_per_phone: 20,
    daily_per_phone: 10,
    hourly_per_ip: 1000,
    key: [7; 32],
};

const SESSION: SessionSettings = SessionSettings {
    idle_secs: 1800,
    max_secs: 604_800,
};

fn limits() -> RateLimits {
    RateLimits {
        user: Rate::new(1000, 1).unwrap(),
        ip: Rate::new(1000, 1).unwrap(),
        global: Rate::new(100_000, 1).unwrap(),
    }
}

fn phone(n: u64) -> Phone {
    Phone::parse(&format!("137{:08}", n * 104_729)).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn sign_in(redis: &mut impl Redis, phone: &Phone, shards: Shards) -> (SessionToken, UserId) {
    let sent = block_on(send_code(redis, phone, None, &SETTINGS, &limits(), shards)).unwrap();
    let signed = block_on(login(
        redis,
        phone,
        sent.code.reveal(),
        None,
        &SETTINGS,
        &SESSION,
        &limits(),
        shards,
    ))
    .unwrap();
    (signed.token, signed.user_id)
}

fn admit(redis: &mut impl Redis, token: &SessionToken, shards: Shards) -> Result<Buyer, ApiError> {
    let vars = HashMap::from([("id_secret", "t")]);
    let request = GateRequest {
        endpoint: Endpoint::BuyVoucher,
        token: Some(token),
        ip: None,
        limits: limits(),
        session: SESSION,
        shards,
    };
    block_on(gate::admit::<Buyer>(redis, &request, &vars)).map(|a| a.caller)
}

fn buy(redis: &mut impl Redis, token: &SessionToken, v: VoucherId, shards: Shards) -> OrderId {
    let buyer = admit(redis, token, shards).unwrap();
    let order = block_on(voucher::buy(
        redis,
        v,
        buyer.user.id,
        buyer.order_id,
        900,
        OrderExport::Off,
        shards,
        &mut 1,
    ))
    .unwrap();
    order.id
}

fn new_voucher(redis: &mut impl Redis, stock: i64) -> VoucherId {
    let new = NewVoucher {
        shop_id: ShopId::new(1).unwrap(),
        title: "t".into(),
        sub_title: String::new(),
        rules: String::new(),
        pay_value: 100,
        actual_value: 200,
        stock,
        begin_ms: now_ms() - 1000,
        end_ms: now_ms() + 3_600_000,
        parts: 1,
    };
    block_on(voucher::create(redis, new)).unwrap().id
}

fn members(redis: &mut impl Redis, key: &str) -> Vec<String> {
    let reply =
        block_on(redis.execute("ZRANGE", &[Arg::from(key), Arg::Int(0), Arg::Int(-1)])).unwrap();
    reply
        .into_iter()
        .map(|r| match r {
            Reply::Bytes(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_single_redis_shop_moves_to_a_cluster_with_sixteen_shards_and_keeps_everything() {
    let one = Shards::ONE;
    let sixteen = Shards::new(16).unwrap();

    // Today's shop: one Redis, one shard.
    let old = RedisServer::start();
    let mut redis = old.native();
    let vouchers = [new_voucher(&mut redis, 100), new_voucher(&mut redis, 100)];
    let goods = GoodsId::new(7).unwrap();
    let mut users = Vec::new();
    let mut orders: Vec<(UserId, OrderId)> = Vec::new();
    for n in 1..=40 {
        let phone = phone(n);
        let (token, id) = sign_in(&mut redis, &phone, one);
        for v in &vouchers[..1 + (n as usize % 2)] {
            orders.push((id, buy(&mut redis, &token, *v, one)));
        }
        block_on(lottery::record_goods(&mut redis, one, id, goods)).unwrap();
        users.push((phone, id, token));
    }
    let highest_old = users.iter().map(|(_, id, _)| id.get()).max().unwrap();

    // The documented steps: copy the data into the cluster, then move the
    // gate's keys to their shards.
    let cluster = RedisCluster::start(3, 0);
    let status = Command::new("redis-cli")
        .args(["--cluster", "import"])
        .arg(format!("127.0.0.1:{}", cluster.nodes[0].port))
        .args(["--cluster-from", &format!("127.0.0.1:{}", old.port)])
        .arg("--cluster-copy")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let report = upgrade_gate(&cluster.seed_url(), true, one, sixteen).unwrap();

    assert!(report.moved >= 40 * 3 + orders.len() as u64, "{report:?}");
    assert_eq!(report.highest_user, highest_old);
    let again = upgrade_gate(&cluster.seed_url(), true, one, sixteen).unwrap();
    assert_eq!(
        (again.moved, again.dropped, again.highest_user),
        (0, 0, highest_old),
        "a second run finds nothing left to move"
    );

    let mut routed = flashspin_native::cluster(&cluster.seed_url());
    let mut new_tokens = Vec::new();
    for (phone, id, token) in &users {
        // Sessions were dropped: sign in again, as the same user.
        assert!(matches!(
            admit(&mut routed, token, sixteen),
            Err(ApiError::Unauthorized)
        ));
        let (token, again) = sign_in(&mut routed, phone, sixteen);
        assert_eq!(again, *id);
        let buyer = admit(&mut routed, &token, sixteen).unwrap();
        assert_eq!(buyer.user.phone, phone.as_str());
        let goods_list = keys::user_lottery_goods(sixteen.of_user(*id), *id);
        assert_eq!(members(&mut routed, &goods_list), ["7"]);
        new_tokens.push(token);
    }
    for (user, order_id) in &orders {
        let (located, _) = block_on(order::locate(&mut routed, sixteen, *order_id)).unwrap();
        assert_eq!(located.map(|l| l.user_id), Some(*user), "{order_id}");
        let (page, _) = block_on(voucher::orders_page(
            &mut routed,
            sixteen,
            *user,
            None,
            None,
            10,
            now_ms(),
        ))
        .unwrap();
        assert!(page.iter().any(|o| o.id == *order_id));
    }

    // Buying goes on: an old user's second voucher, and new users, whose
    // ids are above every old one and name their phone's shard.
    let order = buy(&mut routed, &new_tokens[1], vouchers[1], sixteen);
    let (located, _) = block_on(order::locate(&mut routed, sixteen, order)).unwrap();
    assert_eq!(located.map(|l| l.user_id), Some(users[1].1));
    for n in 100..120 {
        let phone = phone(n);
        let (token, id) = sign_in(&mut routed, &phone, sixteen);
        assert!(id.get() > highest_old, "{id}");
        assert_eq!(sixteen.of_user(id), sixteen.of_phone(&phone));
        let order = buy(&mut routed, &token, vouchers[0], sixteen);
        let (located, _) = block_on(order::locate(&mut routed, sixteen, order)).unwrap();
        assert_eq!(located.map(|l| l.user_id), Some(id));
    }
}
