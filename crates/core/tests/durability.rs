//! What a Redis crash keeps: with `appendfsync always`, every purchase a
//! buyer was told had succeeded is still there after `redis-server` is
//! killed (SIGKILL, mid-sale) and started again on its append-only file,
//! with the stock invariant intact.

use flashspin_testkit::block_on;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flashspin_core::ApiError;
use flashspin_core::ids::{EPOCH_UNIX_SECS, IdKey, OrderId, ShopId, UserId};
use flashspin_core::order::{self, Change, OrderExport, OrderStatus};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_testkit::RedisServer;

const STOCK: i64 = 100_000;
const BUYERS: u32 = 8;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn every_acknowledged_purchase_survives_a_crash_with_fsync_always() {
    let mut server = RedisServer::start_durable("always");
    let voucher = {
        let mut redis = server.native();
        let new = NewVoucher {
            shop_id: ShopId::new(1).unwrap(),
            title: "durable".into(),
            sub_title: String::new(),
            rules: String::new(),
            pay_value: 100,
            actual_value: 200,
            stock: STOCK,
            begin_ms: now_ms() - 60_000,
            end_ms: now_ms() + 3_600_000,
            parts: 1,
        };
        block_on(voucher::create(&mut redis, new)).unwrap().id
    };

    // Buyers buy as fast as they can, each on its own connection, and note
    // every order they were answered; the server is killed under them.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(Barrier::new(BUYERS as usize + 1));
    let workers: Vec<_> = (0..BUYERS)
        .map(|worker| {
            let mut redis = server.native();
            let acknowledged = acknowledged.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let key = IdKey::from_secret("durable");
                for n in 0.. {
                    let user = UserId::new(u64::from(worker) * 1_000_000 + n + 1).unwrap();
                    let sequence = worker * 1_000_000 + n as u32 + 1;
                    let id = OrderId::new(
                        EPOCH_UNIX_SECS + 1000,
                        sequence,
                        Shards::ONE.first(),
                        Shards::ONE,
                        &key,
                    )
                    .unwrap();
                    match block_on(voucher::buy(
                        &mut redis,
                        voucher,
                        user,
                        id,
                        900,
                        OrderExport::Off,
                        Shards::ONE,
                        &mut 1,
                    )) {
                        Ok(order) => acknowledged.lock().unwrap().push(order),
                        // The crash: the connection is gone for good.
                        Err(ApiError::Unavailable(_)) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    start.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 500 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    for worker in workers {
        worker.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 500, "{} orders", acknowledged.len());

    server.restart();
    let mut redis = server.native();
    for order in &acknowledged {
        let found = order::change(
            &mut redis,
            voucher,
            order.id,
            Change::Read,
            None,
            OrderExport::Off,
        );
        assert_eq!(
            block_on(found).as_ref(),
            Ok(order),
            "order {} lost",
            order.id
        );
        assert_eq!(order.status, OrderStatus::Unpaid);
    }
    // Orders may exist that were written but never answered (the crash came
    // between); none was counted twice or lost its unit.
    let remaining = block_on(voucher::get(&mut redis, voucher, OrderExport::Off))
        .unwrap()
        .unwrap()
        .remaining;
    let active: i64 = redis::cmd("HLEN")
        .arg(flashspin_core::keys::voucher_buyers(voucher))
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(remaining + active, STOCK);
    assert!(active >= acknowledged.len() as i64);
}
