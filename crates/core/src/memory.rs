//! What a warm instance remembers between requests (docs/DECISIONS.md,
//! "Warm instances"): a voucher purchase's refusals that every buyer would
//! get alike, sold out and ended, for a bounded time. Once a sale sells
//! out, the rush of buyers still asking is then refused after the gate's
//! round trip alone. The gate runs first on every request, so sessions and
//! limits never come from memory, and a purchase is only ever granted by
//! Redis; what memory costs is that a unit back on sale (an order expired
//! or cancelled) is seen up to the bound later by an instance that
//! remembers the voucher sold out.
//!
//! It also remembers how many parts a voucher's stock is split into
//! (`part.rs`), a fact that never changes, so that a purchase goes straight
//! to the buyer's home part.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::error::{ApiError, Conflict};
use crate::ids::VoucherId;

/// Vouchers remembered at most; a new one replaces the one that expires
/// first. A sale has a handful of vouchers on sale at once.
const CAPACITY: usize = 64;

/// Refusals remembered per voucher, each until its own deadline.
#[derive(Debug, Default)]
pub struct Refusals {
    entries: Vec<(VoucherId, Conflict, Instant)>,
}

impl Refusals {
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The refusal remembered for `voucher`, if it is still within its
    /// bound at `now`.
    pub fn recall(&mut self, voucher: VoucherId, now: Instant) -> Option<ApiError> {
        self.entries.retain(|(_, _, until)| *until > now);
        self.entries
            .iter()
            .find(|(id, _, _)| *id == voucher)
            .map(|(_, refusal, _)| ApiError::Conflict(*refusal))
    }

    /// Remembers `outcome` of a purchase of `voucher` for `bound` from
    /// `now`, when it is a refusal every buyer would get; a purchase that
    /// went through forgets any refusal remembered (a unit came back).
    pub fn note<T>(
        &mut self,
        voucher: VoucherId,
        outcome: &Result<T, ApiError>,
        now: Instant,
        bound: Duration,
    ) {
        self.entries.retain(|(id, _, _)| *id != voucher);
        let refusal = match outcome {
            Err(ApiError::Conflict(c @ (Conflict::SoldOut | Conflict::SaleEnded))) => *c,
            _ => return,
        };
        if bound.is_zero() {
            return;
        }
        if self.entries.len() >= CAPACITY
            && let Some(first) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].2)
        {
            self.entries.swap_remove(first);
        }
        self.entries.push((voucher, refusal, now + bound));
    }
}

/// The number of parts of the vouchers purchases met, at most
/// `CAPACITY * 4` of them; an unsplit voucher is not noted.
#[derive(Debug, Default)]
pub struct PartCounts {
    known: Vec<(VoucherId, u8)>,
}

impl PartCounts {
    pub const fn new() -> Self {
        Self { known: Vec::new() }
    }

    /// What is known of `voucher`'s parts: 1 when nothing is.
    pub fn of(&self, voucher: VoucherId) -> u8 {
        self.known
            .iter()
            .find(|(id, _)| *id == voucher)
            .map_or(1, |(_, n)| *n)
    }

    /// Notes that `voucher` has `parts` parts.
    pub fn learn(&mut self, voucher: VoucherId, parts: u8) {
        if parts <= 1 || self.of(voucher) == parts {
            return;
        }
        self.known.retain(|(id, _)| *id != voucher);
        if self.known.len() >= CAPACITY * 4 {
            self.known.remove(0);
        }
        self.known.push((voucher, parts));
    }
}

/// Answers a purchase of `voucher`: at once with a refusal `memory` still
/// remembers, else by running `purchase` (`voucher::buy`, not started
/// until then) and remembering its refusal for `bound`. Redis alone grants
/// a purchase.
pub async fn purchase<T>(
    memory: &RefCell<Refusals>,
    voucher: VoucherId,
    bound: Duration,
    purchase: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    if let Some(refusal) = memory.borrow_mut().recall(voucher, Instant::now()) {
        return Err(refusal);
    }
    let outcome = purchase.await;
    memory
        .borrow_mut()
        .note(voucher, &outcome, Instant::now(), bound);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> VoucherId {
        VoucherId::new(n).unwrap()
    }

    const SOLD_OUT: Result<(), ApiError> = Err(ApiError::Conflict(Conflict::SoldOut));

    #[test]
    fn a_refusal_every_buyer_gets_is_remembered_for_its_bound_only() {
        let mut memory = Refusals::new();
        let t0 = Instant::now();
        let bound = Duration::from_millis(500);
        memory.note(id(1), &SOLD_OUT, t0, bound);
        memory.note(
            id(2),
            &Err::<(), _>(ApiError::Conflict(Conflict::SaleEnded)),
            t0,
            bound,
        );
        let later = t0 + Duration::from_millis(499);
        assert_eq!(
            memory.recall(id(1), later),
            Some(ApiError::Conflict(Conflict::SoldOut))
        );
        assert_eq!(
            memory.recall(id(2), later),
            Some(ApiError::Conflict(Conflict::SaleEnded))
        );
        assert_eq!(memory.recall(id(3), later), None);
        assert_eq!(memory.recall(id(1), t0 + bound), None);
    }

    #[test]
    fn what_depends_on_the_buyer_or_the_clock_is_never_remembered() {
        let mut memory = Refusals::new();
        let t0 = Instant::now();
        let bound = Duration::from_secs(1);
        for outcome in [
            ApiError::AlreadyPurchased(serde_json::json!({})),
            ApiError::Conflict(Conflict::SaleNotStarted),
            ApiError::NotFound,
            ApiError::Unauthorized,
        ] {
            memory.note(id(1), &Err::<(), _>(outcome), t0, bound);
            assert_eq!(memory.recall(id(1), t0), None);
        }
        // A bound of zero remembers nothing.
        memory.note(id(1), &SOLD_OUT, t0, Duration::ZERO);
        assert_eq!(memory.recall(id(1), t0), None);
    }

    #[test]
    fn a_remembered_refusal_answers_without_running_the_purchase() {
        use flashspin_testkit::block_on;
        let memory = RefCell::new(Refusals::new());
        let bound = Duration::from_secs(60);
        let ran = std::cell::Cell::new(0);
        let buy = || async {
            ran.set(ran.get() + 1);
            SOLD_OUT
        };
        assert_eq!(block_on(purchase(&memory, id(1), bound, buy())), SOLD_OUT);
        assert_eq!(block_on(purchase(&memory, id(1), bound, buy())), SOLD_OUT);
        assert_eq!(ran.get(), 1, "the second answer came from memory");
        assert_eq!(block_on(purchase(&memory, id(2), bound, buy())), SOLD_OUT);
        assert_eq!(ran.get(), 2, "another voucher is asked");
    }

    #[test]
    fn a_purchase_that_went_through_forgets_the_refusal() {
        let mut memory = Refusals::new();
        let t0 = Instant::now();
        memory.note(id(1), &SOLD_OUT, t0, Duration::from_secs(1));
        memory.note(id(1), &Ok::<(), ApiError>(()), t0, Duration::from_secs(1));
        assert_eq!(memory.recall(id(1), t0), None);
    }

    #[test]
    fn memory_is_bounded_and_drops_what_expires_first() {
        let mut memory = Refusals::new();
        let t0 = Instant::now();
        for n in 1..=CAPACITY as u64 + 1 {
            memory.note(id(n), &SOLD_OUT, t0, Duration::from_millis(1000 + n));
        }
        assert_eq!(memory.entries.len(), CAPACITY);
        assert_eq!(memory.recall(id(1), t0), None, "the first to expire went");
        assert!(memory.recall(id(CAPACITY as u64 + 1), t0).is_some());
    }
}
