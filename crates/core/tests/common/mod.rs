//! Set-up shared by the order tests: vouchers on sale, users and order ids.
//! Each test file uses only some of it.
#![allow(dead_code)]

use flashspin_core::ids::{EPOCH_UNIX_SECS, IdKey, OrderId, ShopId, UserId, VoucherId};
use flashspin_core::shard::Shards;
use flashspin_core::voucher::{self, NewVoucher};
use flashspin_testkit::NativeRedis;
use flashspin_testkit::block_on;

/// What a buyer pays for every voucher here, cents.
pub const PAY_VALUE: i64 = 8000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A voucher of `stock` on sale from `begin_ms` to `end_ms`.
pub fn sale(redis: &mut NativeRedis, stock: i64, begin_ms: i64, end_ms: i64) -> VoucherId {
    let new = NewVoucher {
        shop_id: ShopId::new(1).unwrap(),
        title: "t".into(),
        sub_title: String::new(),
        rules: String::new(),
        pay_value: PAY_VALUE,
        actual_value: 10_000,
        stock,
        begin_ms,
        end_ms,
        parts: 1,
    };
    block_on(voucher::create(redis, new)).unwrap().id
}

/// A voucher on sale now, for an hour.
pub fn on_sale(redis: &mut NativeRedis, stock: i64) -> VoucherId {
    sale(redis, stock, now_ms() - 1000, now_ms() + 3_600_000)
}

pub fn user(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

pub fn order_id(seq: u32) -> OrderId {
    OrderId::new(
        EPOCH_UNIX_SECS + 1000,
        seq,
        Shards::ONE.first(),
        Shards::ONE,
        &IdKey::from_secret("t"),
    )
    .unwrap()
}
