//! The gate's shards: where the keys of users, sessions, login codes, the
//! order index and the request limiters live.
//!
//! Every request passes the gate, so the gate's keys must not all sit in
//! one hash slot on a Redis Cluster. They are split over `redis_shards`
//! shards (1, 4, 16 or 64), each one hash tag, and each request's gate
//! still runs as one script in one slot:
//!
//! - a user lives in shard `user id mod K`; a new user is given an id
//!   that lands in their phone's shard, so that login is one script;
//! - a phone's login code and user id index live in the phone's shard;
//! - a session token names its user's shard (in its first byte), so the
//!   gate finds the session, the user's limiters and the order sequence in
//!   one slot;
//! - a request without a session is limited in its client address's shard;
//! - an order id ends in its buyer's shard (see `ids.rs`), and its index
//!   entry lives there, next to the buyer's list of orders.
//!
//! With one shard (the default) every such key keeps the `{gate}` tag it
//! always had: a single Redis, or a proxy in front of a cluster, sees
//! exactly the keys it did before shards existed. With more, shard `k`'s
//! tag is chosen so that its slot falls in the `k`-th of K equal ranges of
//! the slot space: a cluster whose primaries own equal ranges gets equal
//! numbers of shards. The count is fixed for a shop's data: changing it
//! moves every user (docs/CONFIGURATION.md, "Redis Cluster").

use std::fmt;

use crate::client_ip::ClientIp;
use crate::cluster::{SLOTS, find_tag, slot};
use crate::config::{Variables, read};
use crate::error::ApiError;
use crate::ids::{OrderId, UserId};
use crate::phone::Phone;

/// How many shards the gate's keys are split over: 1, 4, 16 or 64 (a power
/// of four, so that an order id's sequence keeps an even number of bits;
/// see `ids.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards(u8);

/// One of the gate's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u8,
    count: u8,
}

impl Shards {
    /// Everything in one slot, `{gate}`.
    pub const ONE: Shards = Shards(1);
    /// The counts a shop may choose.
    pub const ALLOWED: [u8; 4] = [1, 4, 16, 64];

    pub fn new(count: u32) -> Option<Self> {
        Self::ALLOWED
            .into_iter()
            .find(|c| u32::from(*c) == count)
            .map(Shards)
    }

    /// From the `redis_shards` variable.
    pub fn from_vars(vars: &impl Variables) -> Result<Self, ApiError> {
        let count: u32 = read(vars, "redis_shards")?;
        Self::new(count).ok_or_else(|| {
            ApiError::Internal(format!(
                "variable redis_shards: {count} is not one of 1, 4, 16, 64"
            ))
        })
    }

    pub fn count(self) -> u8 {
        self.0
    }

    /// log2 of the count: the low bits of an order id that name its shard.
    pub fn bits(self) -> u32 {
        self.0.trailing_zeros()
    }

    fn at(self, n: u64) -> Shard {
        Shard {
            index: (n % u64::from(self.0)) as u8,
            count: self.0,
        }
    }

    /// Shard 0.
    pub const fn first(self) -> Shard {
        Shard {
            index: 0,
            count: self.0,
        }
    }

    /// Shard `index` (taken modulo the count).
    pub fn shard(self, index: u64) -> Shard {
        self.at(index)
    }

    /// Every shard, in order.
    pub fn all(self) -> impl Iterator<Item = Shard> {
        (0..u64::from(self.0)).map(move |i| self.at(i))
    }

    /// Where a user's record, sessions, lists and limiters live.
    pub fn of_user(self, id: UserId) -> Shard {
        self.at(id.get())
    }

    /// Where a phone's login code and user id live. The slot function is
    /// CRC16, well spread over phone numbers and cheap.
    pub fn of_phone(self, phone: &Phone) -> Shard {
        self.at(u64::from(slot(phone.as_str().as_bytes())))
    }

    /// Where the limiters of a request without a session are: by its
    /// client's limit key (the address, or the /64 for IPv6); shard 0 when
    /// the address is unknown.
    pub fn of_client(self, ip: Option<&ClientIp>) -> Shard {
        ip.map_or(self.at(0), |ip| {
            self.at(u64::from(slot(ip.limit_key().as_bytes())))
        })
    }

    /// Where an order's index entry lives: its id's low bits, which name
    /// its buyer's shard for every order placed since shards existed.
    pub fn of_order(self, id: OrderId) -> Shard {
        self.at(id.raw())
    }

    /// The shard a session token names: its first byte, which
    /// [`SessionToken::generate_in`](crate::session::SessionToken::generate_in)
    /// chose.
    pub fn of_token_byte(self, first_byte: u8) -> Shard {
        self.at(u64::from(first_byte))
    }
}

impl Shard {
    pub fn index(self) -> u8 {
        self.index
    }

    /// The hash tag, braces included: `{gate}` with one shard; otherwise
    /// `{gate-<k>-<n>}` with the smallest `n` whose slot falls in the
    /// shard's range.
    pub fn tag(self) -> String {
        if self.count == 1 {
            return String::from("{gate}");
        }
        let width = u32::from(SLOTS) / u32::from(self.count);
        let range = u32::from(self.index) * width..(u32::from(self.index) + 1) * width;
        // About `count` tries.
        find_tag(&format!("gate-{}-", self.index), |slot| {
            range.contains(&u32::from(slot))
        })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_powers_of_four_up_to_64() {
        for ok in [1, 4, 16, 64] {
            assert_eq!(Shards::new(ok).map(Shards::count), Some(ok as u8));
        }
        for bad in [0, 2, 3, 8, 32, 128, 256] {
            assert_eq!(Shards::new(bad), None, "{bad}");
        }
        assert_eq!(Shards::new(16).unwrap().bits(), 4);
        assert_eq!(Shards::ONE.bits(), 0);
    }

    #[test]
    fn one_shard_is_the_gate_of_old() {
        assert_eq!(Shards::ONE.shard(0).tag(), "{gate}");
        assert_eq!(
            Shards::ONE.of_user(UserId::new(12345).unwrap()),
            Shards::ONE.shard(0)
        );
    }

    #[test]
    fn each_shards_slot_lies_in_its_own_range() {
        for count in [4u32, 16, 64] {
            let shards = Shards::new(count).unwrap();
            let width = u32::from(SLOTS) / count;
            for shard in shards.all() {
                let tag = shard.tag();
                let s = u32::from(slot(tag.as_bytes()));
                assert_eq!(s / width, u32::from(shard.index()), "{tag} slot {s}");
            }
        }
    }

    #[test]
    fn phones_spread_over_the_shards() {
        let shards = Shards::new(16).unwrap();
        let mut counts = [0u32; 16];
        for n in 0..16_000u64 {
            let phone = Phone::parse(&format!("138{:08}", n * 7919 % 100_000_000)).unwrap();
            counts[usize::from(shards.of_phone(&phone).index())] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 800 && *max < 1200, "{counts:?}");
    }
}
