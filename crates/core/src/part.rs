//! The parts of a voucher's stock. A voucher on sale is one hash slot: its
//! stock, buyers and orders change together in one script. A hot voucher
//! can be split, when created, into up to [`MAX_PARTS`] parts, each with its
//! share of the stock and its own slot, so that its buyers spread over a
//! Redis Cluster's primaries. Each part is a complete voucher store (record,
//! buyers, orders, outbox, payment events): every script that works on a
//! voucher works on one part unchanged.
//!
//! A buyer always buys in their home part (a hash of their user id), so one
//! part's buyers hash keeps them to one active order per voucher. A home
//! part that runs out borrows units from the others (`voucher::buy`,
//! docs/DECISIONS.md "One hot voucher over several slots").
//!
//! Part 0 is the voucher as it always was, `{v:<id>}`; part p of P is
//! `{v:<id>/<p>.<n>}` with the smallest n whose slot lies just past p/P of
//! the way round the slot space from part 0's, so the parts of one voucher
//! land on different primaries of a cluster whose primaries own equal
//! ranges.

use std::fmt;

use crate::cluster::{SLOTS, find_tag, slot};
use crate::ids::{UserId, VoucherId};

/// The most parts a voucher's stock can be split into.
pub const MAX_PARTS: u8 = 16;

/// How far past its place (p/P of the way round from part 0's slot) part
/// p's slot may fall: narrow, so that a cluster whose primaries own equal
/// ranges serves each part from the primary p ranges on from part 0's, with
/// the rare exception of a part 0 within this many slots of its range's end.
const TAG_WINDOW: u32 = 64;

/// One part of a voucher's stock, with its own hash tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoucherPart {
    voucher: VoucherId,
    index: u8,
    count: u8,
}

impl From<VoucherId> for VoucherPart {
    /// The whole of a voucher that is not split: its part 0 of 1.
    fn from(voucher: VoucherId) -> Self {
        Self {
            voucher,
            index: 0,
            count: 1,
        }
    }
}

impl VoucherPart {
    /// Part `index` of `count`; `None` unless `index < count <= MAX_PARTS`.
    pub fn new(voucher: VoucherId, index: u8, count: u8) -> Option<Self> {
        (index < count && count <= MAX_PARTS).then_some(Self {
            voucher,
            index,
            count,
        })
    }

    /// Every part of a voucher split into `count`.
    pub fn all(voucher: VoucherId, count: u8) -> impl Iterator<Item = VoucherPart> {
        (0..count.clamp(1, MAX_PARTS)).map(move |index| Self {
            voucher,
            index,
            count: count.clamp(1, MAX_PARTS),
        })
    }

    /// The part `user` buys in. The id is mixed first (SplitMix64's
    /// finaliser), so that it does not follow the user's gate shard, which
    /// is the id's low bits.
    pub fn home(voucher: VoucherId, count: u8, user: UserId) -> Self {
        let mut x = user.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let count = count.clamp(1, MAX_PARTS);
        Self {
            voucher,
            index: (x % u64::from(count)) as u8,
            count,
        }
    }

    pub fn voucher(self) -> VoucherId {
        self.voucher
    }

    pub fn index(self) -> u8 {
        self.index
    }

    pub fn count(self) -> u8 {
        self.count
    }

    /// The other parts of the same voucher, starting after this one.
    pub fn others(self) -> impl Iterator<Item = VoucherPart> {
        (1..self.count).map(move |step| Self {
            index: (self.index + step) % self.count,
            ..self
        })
    }

    /// The hash tag, braces included.
    pub fn tag(self) -> String {
        let base = format!("v:{}", self.voucher);
        if self.index == 0 {
            return format!("{{{base}}}");
        }
        let slots = u32::from(SLOTS);
        let start = u32::from(slot(base.as_bytes()))
            + u32::from(self.index) * (slots / u32::from(self.count));
        // About SLOTS / TAG_WINDOW tries.
        find_tag(&format!("{base}/{}.", self.index), |slot| {
            (u32::from(slot) + slots - start % slots) % slots < TAG_WINDOW
        })
    }

    /// How messages and index entries name the part: the voucher id for an
    /// unsplit voucher's part (as before parts existed), `<id>/<index>/<count>`
    /// otherwise.
    pub fn reference(self) -> String {
        if self.count == 1 {
            self.voucher.to_string()
        } else {
            format!("{}/{}/{}", self.voucher, self.index, self.count)
        }
    }

    /// Reads a [`reference`](Self::reference).
    pub fn parse_reference(text: &str) -> Option<Self> {
        let mut fields = text.split('/');
        let voucher = VoucherId::parse(fields.next()?)?;
        match (fields.next(), fields.next(), fields.next()) {
            (None, None, None) => Some(voucher.into()),
            (Some(index), Some(count), None) => {
                Self::new(voucher, index.parse().ok()?, count.parse().ok()?)
            }
            _ => None,
        }
    }
}

impl fmt::Display for VoucherPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reference())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64) -> VoucherId {
        VoucherId::new(n).unwrap()
    }

    #[test]
    fn an_unsplit_voucher_keeps_its_tag_and_name() {
        let whole = VoucherPart::from(v(42));
        assert_eq!(whole.tag(), "{v:42}");
        assert_eq!(whole.reference(), "42");
        assert_eq!(VoucherPart::parse_reference("42"), Some(whole));
        assert_eq!(VoucherPart::new(v(42), 0, 3).unwrap().tag(), "{v:42}");
    }

    #[test]
    fn references_round_trip_and_nonsense_is_refused() {
        let part = VoucherPart::new(v(7), 2, 3).unwrap();
        assert_eq!(part.reference(), "7/2/3");
        assert_eq!(VoucherPart::parse_reference("7/2/3"), Some(part));
        for bad in ["", "0", "7/3/3", "7/1", "7/1/17", "7/a/3", "7/1/3/1", "x"] {
            assert_eq!(VoucherPart::parse_reference(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_parts_slots_are_spread_round_the_slot_space() {
        for id in 1..100 {
            for count in [2u8, 3, 4, 16] {
                let width = u32::from(SLOTS) / u32::from(count);
                let first = u32::from(slot(format!("v:{id}").as_bytes()));
                for part in VoucherPart::all(v(id), count) {
                    let tag = part.tag();
                    let s = u32::from(slot(tag.as_bytes()));
                    let offset = (s + u32::from(SLOTS) - first) % u32::from(SLOTS);
                    let place = u32::from(part.index()) * width;
                    assert!((place..place + TAG_WINDOW).contains(&offset), "{tag}");
                }
            }
        }
    }

    #[test]
    fn buyers_spread_over_the_parts_and_keep_their_home() {
        let mut counts = [0u32; 3];
        for user in 1..=3000 {
            let home = VoucherPart::home(v(1), 3, UserId::new(user).unwrap());
            counts[usize::from(home.index())] += 1;
            assert_eq!(home, VoucherPart::home(v(1), 3, UserId::new(user).unwrap()));
        }
        assert!(counts.iter().all(|c| (900..1100).contains(c)), "{counts:?}");
        let part = VoucherPart::new(v(1), 1, 3).unwrap();
        let others: Vec<u8> = part.others().map(VoucherPart::index).collect();
        assert_eq!(others, [2, 0]);
    }
}
