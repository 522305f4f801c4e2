//! The gate's keys split over 16 shards, on a real 3-primary Redis Cluster
//! through `cluster::ClusterRedis`: every script of sending a code, signing
//! in and passing the gate touches one slot (a cluster refuses a script
//! whose keys span two, with CROSSSLOT), users and orders land in the
//! shards their ids name, the keys spread over the primaries, the per-IP
//! limit of sending codes stays exact across phones of every shard, and
//! the global limit's parts never admit more than their sum.

use std::collections::{BTreeMap, HashMap};

use flashspin_core::ApiError;
use flashspin_core::client_ip::ClientIp;
use flashspin_core::cluster::{ClusterRedis, NoCache};
use flashspin_core::config::RateLimits;
use flashspin_core::gate::{self, Admitted, Buyer, GateRequest};
use flashspin_core::ids::UserId;
use flashspin_core::keys;
use flashspin_core::login::{CodeSettings, login, send_code};
use flashspin_core::phone::Phone;
use flashspin_core::ratelimit::{Endpoint, Rate};
use flashspin_core::redis::{Arg, Redis};
use flashspin_core::session::{SessionSettings, SessionToken};
use flashspin_core::shard::Shards;
use flashspin_testkit::{NativeConnector, RedisCluster, block_on};

type Router = ClusterRedis<NativeConnector, NoCache>;

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

fn shards() -> Shards {
    Shards::new(16).unwrap()
}

fn router(cluster: &RedisCluster) -> Router {
    ClusterRedis::new(
        NativeConnector {
            seed: cluster.seed_url(),
        },
        NoCache,
    )
}

fn limits(global: &str) -> RateLimits {
    RateLimits {
        user: Rate::new(1000, 1).unwrap(),
        ip: Rate::new(1000, 1).unwrap(),
        global: global.parse().unwrap(),
    }
}

fn phone(n: u32) -> Phone {
    Phone::parse(&format!("139{:08}", n * 7_919)).unwrap()
}

fn ip(n: u32) -> ClientIp {
    ClientIp(format!("10.1.{}.{}", n / 200, n % 200).parse().unwrap())
}

fn sign_in(redis: &mut Router, phone: &Phone, client: Option<&ClientIp>) -> (SessionToken, UserId) {
    let sent = block_on(send_code(
        redis,
        phone,
        client,
        &SETTINGS,
        &limits("100000/1"),
        shards(),
    ))
    .unwrap();
    let signed = block_on(login(
        redis,
        phone,
        sent.code.reveal(),
        client,
        &SETTINGS,
        &SESSION,
        &limits("100000/1"),
        shards(),
    ))
    .unwrap();
    (signed.token, signed.user_id)
}

fn buyer(redis: &mut Router, token: &SessionToken, global: &str) -> Result<Buyer, ApiError> {
    let vars = HashMap::from([("id_secret", "t")]);
    let request = GateRequest {
        endpoint: Endpoint::BuyVoucher,
        token: Some(token),
        ip: None,
        limits: limits(global),
        session: SESSION,
        shards: shards(),
    };
    block_on(gate::admit::<Buyer>(redis, &request, &vars)).map(|a: Admitted<Buyer>| a.caller)
}

/// Runs one command through the router, which finds its node.
fn command(redis: &mut Router, name: &str, args: &[&str]) {
    let args: Vec<Arg> = args.iter().map(|a| Arg::from(*a)).collect();
    block_on(redis.execute(name, &args)).unwrap();
}

/// Keys on each primary.
fn keys_per_node(cluster: &RedisCluster) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|node| redis::cmd("DBSIZE").query(&mut node.conn()).unwrap())
        .collect()
}

#[test]
fn signing_in_and_buying_run_in_one_slot_per_script_and_ids_name_their_shards() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let shards = shards();
    for n in 1..=48 {
        // Half the clients have an address, whose shard is rarely the phone's.
        let client = (n % 2 == 0).then(|| ip(n));
        let phone = phone(n);
        let (token, user_id) = sign_in(&mut redis, &phone, client.as_ref());
        assert_eq!(
            shards.of_user(user_id),
            shards.of_phone(&phone),
            "{phone:?}"
        );
        assert_eq!(token.shard(shards), shards.of_user(user_id));
        let buyer = buyer(&mut redis, &token, "100000/1").unwrap();
        assert_eq!(buyer.user.id, user_id);
        assert_eq!(buyer.user.home, shards.of_user(user_id));
        assert_eq!(shards.of_order(buyer.order_id), buyer.user.home);
    }
    // The same phone again: the same user.
    let again = phone(7);
    let (_, before) = {
        let gap = keys::login_code_gap(shards.of_phone(&again), again.as_str());
        command(&mut redis, "DEL", &[&gap]);
        sign_in(&mut redis, &again, None)
    };
    let gap = keys::login_code_gap(shards.of_phone(&again), again.as_str());
    command(&mut redis, "DEL", &[&gap]);
    let (_, after) = sign_in(&mut redis, &again, Some(&ip(99)));
    assert_eq!(before, after);
}

#[test]
fn the_gates_keys_spread_over_the_primaries() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    for n in 1..=300 {
        let (token, _) = sign_in(&mut redis, &phone(n), Some(&ip(n)));
        buyer(&mut redis, &token, "100000/1").unwrap();
    }
    let counts = keys_per_node(&cluster);
    let total: u64 = counts.iter().sum();
    for count in &counts {
        let share = *count as f64 / total as f64;
        assert!((0.25..=0.42).contains(&share), "{counts:?}");
    }
}

#[test]
fn a_clients_hourly_code_limit_holds_across_phones_of_every_shard() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let settings = CodeSettings {
        hourly_per_ip: 5,
        ..SETTINGS
    };
    let client = ip(1);
    let mut stored = 0;
    let mut phone_shards = std::collections::HashSet::new();
    for n in 1..=20 {
        let phone = phone(n);
        phone_shards.insert(shards().of_phone(&phone));
        match block_on(send_code(
            &mut redis,
            &phone,
            Some(&client),
            &settings,
            &limits("100000/1"),
            shards(),
        )) {
            Ok(_) => stored += 1,
            Err(ApiError::RateLimited(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(phone_shards.len() > 5, "{phone_shards:?}");
    assert_eq!(stored, 5);
}

#[test]
fn the_global_limits_parts_never_admit_more_than_the_quota_plus_one_per_shard() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let shards = shards();
    // 32 a minute over 16 shards: 2 per shard.
    let mut admitted: BTreeMap<u8, u32> = BTreeMap::new();
    let users: Vec<SessionToken> = (1..=160)
        .map(|n| sign_in(&mut redis, &phone(n), None).0)
        .collect();
    for token in &users {
        match buyer(&mut redis, token, "32/60") {
            Ok(buyer) => *admitted.entry(buyer.user.home.index()).or_default() += 1,
            Err(ApiError::RateLimited(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(admitted.values().all(|n| *n == 2), "{admitted:?}");
    let total: u32 = admitted.values().sum();
    assert!(total <= 32 + 15, "{total}");
    // 160 users reach every shard: the whole quota is used.
    assert_eq!(admitted.len(), usize::from(shards.count()));
    assert_eq!(total, 32);
}

#[test]
fn a_user_who_lives_outside_their_phones_shard_signs_in_through_their_own() {
    let cluster = RedisCluster::start(3, 0);
    let mut redis = router(&cluster);
    let shards = shards();
    let phone = phone(5);
    let home = shards.of_phone(&phone);
    // A user from before the shard count was 16: id 1 names shard 1.
    let user_id = UserId::new(if home.index() == 1 { 2 } else { 1 }).unwrap();
    let elsewhere = shards.of_user(user_id);
    assert_ne!(elsewhere, home);
    let user_key = keys::user(elsewhere, user_id);
    let fields = [
        user_key.as_str(),
        "phone",
        phone.as_str(),
        "nickname",
        "old",
    ];
    command(&mut redis, "HSET", &fields);
    let index = keys::user_id_by_phone(home, phone.as_str());
    command(&mut redis, "SET", &[&index, &user_id.to_string()]);

    let (token, signed_in_as) = sign_in(&mut redis, &phone, Some(&ip(3)));
    assert_eq!(signed_in_as, user_id);
    assert_eq!(token.shard(shards), elsewhere);
    let buyer = buyer(&mut redis, &token, "100000/1").unwrap();
    assert_eq!(
        (buyer.user.id, buyer.user.nickname.as_str()),
        (user_id, "old")
    );
    assert_eq!(shards.of_order(buyer.order_id), elsewhere);
}
