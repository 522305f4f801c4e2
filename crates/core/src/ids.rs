//! The ids that cross crates, each its own type so that one cannot be
//! passed for another: users, shops, vouchers and lottery goods (decimal
//! numbers from 1, shown to clients as strings), and order ids.
//!
//! Order ids: 64-bit, unique, roughly time-ordered, and silent about how
//! many orders there are.
//!
//! Layout, high bit first: `0 | 31 bits of seconds since 2026-01-01 UTC |
//! 32 - b bits of permuted sequence | b bits of shard`, where the gate has
//! 2^b shards (`shard.rs`; b = 0 with one shard). The sequence counts orders
//! per UTC day and shard (Redis `INCR`, see `gate.lua`); a keyed permutation
//! of it keeps neighbouring orders from having neighbouring ids, so an id
//! does not tell how many orders came before it. Within a day and shard the
//! permutation is a bijection, so distinct sequence numbers give distinct
//! ids whatever the seconds; shards differ in the low bits, days in the
//! seconds. 31 bits of seconds last until 2094, and the id is always a
//! positive `i64`. The low bits name the buyer's shard, where the order's
//! index entry lives, so an id alone finds its order.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::shard::{Shard, Shards};

/// A number written as 1 to 20 decimal digits and nothing else (no sign,
/// no spaces), up to `u64::MAX`. Rust's own `parse` would also take `+7`.
pub fn digits(s: &str) -> Option<u64> {
    if !is_digits(s) {
        return None;
    }
    s.parse().ok()
}

/// Whether `s` is written as 1 to 20 decimal digits and nothing else,
/// whatever their value.
pub fn is_digits(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses an id: decimal digits, 1 to `u64::MAX`, no sign or spaces.
fn parse_decimal(s: &str) -> Option<u64> {
    digits(s).filter(|id| *id > 0)
}

/// The ids written as decimal numbers, parsed alike.
pub trait DecimalId: Sized {
    fn parse_decimal(s: &str) -> Option<Self>;
}

macro_rules! decimal_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// From text: decimal digits, 1 to `u64::MAX`, no sign or spaces.
            pub fn parse(s: &str) -> Option<Self> {
                parse_decimal(s).map(Self)
            }

            /// From a number; 0 names nothing.
            pub fn new(id: u64) -> Option<Self> {
                (id > 0).then_some(Self(id))
            }

            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl DecimalId for $name {
            fn parse_decimal(s: &str) -> Option<Self> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

decimal_id!(
    /// A user, numbered from 1 in the order they first signed in.
    UserId
);
decimal_id!(
    /// A shop, as the operator names it when creating vouchers.
    ShopId
);
decimal_id!(
    /// A flash-sale voucher.
    VoucherId
);
decimal_id!(
    /// A lottery goods.
    GoodsId
);
decimal_id!(
    /// A period of a lottery goods, numbered from 1.
    PeriodNumber
);

/// 2026-01-01T00:00:00Z.
pub const EPOCH_UNIX_SECS: u64 = 1_767_225_600;

const ROUNDS: usize = 6;

/// The key of the sequence permutation: round keys for a Feistel network.
#[derive(Clone)]
pub struct IdKey([u32; ROUNDS]);

impl IdKey {
    /// Derives the round keys from a secret (the `id_secret` variable).
    pub fn from_secret(secret: &str) -> Self {
        let digest = Sha256::digest(format!("flashspin order ids:{secret}").as_bytes());
        let mut keys = [0u32; ROUNDS];
        for (i, k) in keys.iter_mut().enumerate() {
            *k = u32::from_le_bytes(digest[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        }
        Self(keys)
    }

    /// The keyed permutation of 32-bit values: a balanced Feistel network on
    /// 16-bit halves, a bijection by construction.
    pub fn permute(&self, x: u32) -> u32 {
        self.permute_bits(x, 32)
    }

    /// The inverse of [`IdKey::permute`].
    pub fn unpermute(&self, y: u32) -> u32 {
        self.unpermute_bits(y, 32)
    }

    /// The keyed permutation of `bits`-bit values (an even number up to
    /// 32): the same network on halves of `bits / 2`.
    pub fn permute_bits(&self, x: u32, bits: u32) -> u32 {
        let (half, mask) = halves(bits);
        let (mut left, mut right) = ((x >> half) & mask, x & mask);
        for &k in &self.0 {
            (left, right) = (right, left ^ (u32::from(round(right as u16, k)) & mask));
        }
        (left << half) | right
    }

    /// The inverse of [`IdKey::permute_bits`].
    pub fn unpermute_bits(&self, y: u32, bits: u32) -> u32 {
        let (half, mask) = halves(bits);
        let (mut left, mut right) = ((y >> half) & mask, y & mask);
        for &k in self.0.iter().rev() {
            (left, right) = (right ^ (u32::from(round(left as u16, k)) & mask), left);
        }
        (left << half) | right
    }
}

/// Half the width and its mask, for a Feistel network on `bits` bits.
fn halves(bits: u32) -> (u32, u32) {
    debug_assert!(bits.is_multiple_of(2) && (2..=32).contains(&bits));
    let half = bits / 2;
    (half, (1u32 << half) - 1)
}

/// The round function: mixes a half with the round key.
fn round(half: u16, key: u32) -> u16 {
    let mut x = u32::from(half) ^ key;
    x = x.wrapping_mul(0x9E37_79B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85EB_CA77);
    x ^= x >> 13;
    (x >> 8) as u16
}

/// An order id. Shown to clients as a decimal string: it does not fit in a
/// JavaScript number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Before the epoch or after 2094.
    TimeOutOfRange(u64),
    /// More orders in a day and shard than the id has room for.
    SequenceOutOfRange(u32),
}

impl OrderId {
    /// The id of the `sequence`-th order of the day in `shard`, created at
    /// `unix_secs`. The sequence must fit in the bits the shards leave (32
    /// with one shard, 26 with 64: 67 million orders a day per shard).
    pub fn new(
        unix_secs: u64,
        sequence: u32,
        shard: Shard,
        shards: Shards,
        key: &IdKey,
    ) -> Result<Self, IdError> {
        let secs = unix_secs
            .checked_sub(EPOCH_UNIX_SECS)
            .filter(|s| *s < 1 << 31)
            .ok_or(IdError::TimeOutOfRange(unix_secs))?;
        let bits = 32 - shards.bits();
        if bits < 32 && sequence >> bits != 0 {
            return Err(IdError::SequenceOutOfRange(sequence));
        }
        let low = (u64::from(key.permute_bits(sequence, bits)) << shards.bits())
            | u64::from(shard.index());
        Ok(Self((secs << 32) | low))
    }

    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    pub fn raw(self) -> u64 {
        self.0
    }

    /// Seconds since the Unix epoch at which the order was made.
    pub fn unix_secs(self) -> u64 {
        EPOCH_UNIX_SECS + (self.0 >> 32)
    }

    /// The day's sequence number in its shard, given the key.
    pub fn sequence(self, shards: Shards, key: &IdKey) -> u32 {
        key.unpermute_bits(self.0 as u32 >> shards.bits(), 32 - shards.bits())
    }
}

impl DecimalId for OrderId {
    fn parse_decimal(s: &str) -> Option<Self> {
        parse_decimal(s).map(Self)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ONE: Shard = Shards::ONE.first();

    #[test]
    fn ids_are_plain_positive_decimals() {
        assert_eq!(VoucherId::parse("42").map(VoucherId::get), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            " 1",
            "abc",
            "99999999999999999999999",
        ] {
            assert_eq!(UserId::parse(bad), None, "{bad}");
        }
        assert_eq!(GoodsId::new(0), None);
    }

    #[test]
    fn permute_and_unpermute_are_inverse() {
        let key = IdKey::from_secret("test");
        for x in (0..=u32::MAX).step_by(65_537).chain([0, 1, u32::MAX]) {
            assert_eq!(key.unpermute(key.permute(x)), x);
        }
    }

    #[test]
    fn a_days_worth_of_sequence_numbers_gives_distinct_ids() {
        // A million orders in the same second: every id differs.
        let key = IdKey::from_secret("test");
        let secs = EPOCH_UNIX_SECS + 86_400 * 300;
        let ids: HashSet<OrderId> = (1..=1_000_000u32)
            .map(|seq| OrderId::new(secs, seq, ONE, Shards::ONE, &key).unwrap())
            .collect();
        assert_eq!(ids.len(), 1_000_000);
    }

    #[test]
    fn neighbouring_orders_do_not_get_neighbouring_ids() {
        let key = IdKey::from_secret("test");
        let a = key.permute(1000);
        let b = key.permute(1001);
        assert!(a.abs_diff(b) > 1 << 16, "{a} {b}");
        assert_ne!(IdKey::from_secret("other").permute(1000), a);
    }

    #[test]
    fn bit_layout() {
        let key = IdKey::from_secret("test");
        let secs = EPOCH_UNIX_SECS + 12_345;
        let id = OrderId::new(secs, 42, ONE, Shards::ONE, &key).unwrap();
        assert_eq!(id.raw() >> 63, 0, "the top bit stays clear");
        assert_eq!(id.raw() >> 32, 12_345);
        assert_eq!(id.raw() as u32, key.permute(42));
        assert_eq!(id.unix_secs(), secs);
        assert_eq!(id.sequence(Shards::ONE, &key), 42);
        assert!(i64::try_from(id.raw()).is_ok());
        let last = OrderId::new(
            EPOCH_UNIX_SECS + (1 << 31) - 1,
            u32::MAX,
            ONE,
            Shards::ONE,
            &key,
        )
        .unwrap();
        assert!(i64::try_from(last.raw()).is_ok());
    }

    #[test]
    fn a_sharded_id_ends_in_its_shard_and_ids_differ_across_shards() {
        let key = IdKey::from_secret("test");
        let shards = Shards::new(16).unwrap();
        let secs = EPOCH_UNIX_SECS + 99;
        let mut ids = HashSet::new();
        for shard in shards.all() {
            for seq in 1..=5_000u32 {
                let id = OrderId::new(secs, seq, shard, shards, &key).unwrap();
                assert_eq!(shards.of_order(id), shard);
                assert_eq!(id.sequence(shards, &key), seq);
                assert!(ids.insert(id));
            }
        }
        let first = shards.shard(0);
        assert_eq!(
            OrderId::new(secs, 1 << 28, first, shards, &key),
            Err(IdError::SequenceOutOfRange(1 << 28))
        );
        assert!(OrderId::new(secs, (1 << 28) - 1, first, shards, &key).is_ok());
    }

    #[test]
    fn narrower_permutations_are_bijections() {
        let key = IdKey::from_secret("test");
        for bits in [26u32, 28, 30] {
            let seen: HashSet<u32> = (0..1u32 << 12).map(|x| key.permute_bits(x, bits)).collect();
            assert_eq!(seen.len(), 1 << 12);
            assert!(seen.iter().all(|y| y >> bits == 0));
            for x in [0, 1, 77, (1 << bits) - 1] {
                assert_eq!(key.unpermute_bits(key.permute_bits(x, bits), bits), x);
            }
        }
    }

    #[test]
    fn times_outside_the_range_are_refused() {
        let key = IdKey::from_secret("test");
        assert!(OrderId::new(EPOCH_UNIX_SECS - 1, 1, ONE, Shards::ONE, &key).is_err());
        assert!(OrderId::new(EPOCH_UNIX_SECS + (1 << 31), 1, ONE, Shards::ONE, &key).is_err());
    }
}
