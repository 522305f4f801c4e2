//! What an instance knows between requests of how many parts each voucher's
//! stock is split into (`flashspin_core::part`), so that a purchase goes
//! straight to the buyer's part instead of asking part 0 first. The count
//! never changes once the voucher exists, so nothing known goes stale.
//!
//! On WASI 0.3 an instance serves many requests and keeps it in memory. On
//! WASI 0.2 an instance serves one, so with `redis_cluster` on (split
//! vouchers are for clusters) the count is kept in the key-value store
//! `default`, like the cluster's layout: one read per purchase, one write
//! per voucher and store. A store that fails costs a round trip, not the
//! purchase.

use flashspin_core::ids::VoucherId;

/// What is known of `voucher`'s parts: 1 when nothing is.
pub fn recall(voucher: VoucherId) -> u8 {
    imp::recall(voucher)
}

/// Notes that `voucher` has `parts` parts, once a purchase learnt it.
pub fn remember(voucher: VoucherId, parts: u8) {
    if parts > 1 {
        imp::remember(voucher, parts);
    }
}

#[cfg(not(feature = "wasip3"))]
mod imp {
    use flashspin_core::config::Variables;
    use flashspin_core::ids::VoucherId;
    use spin_sdk::key_value::Store;

    fn store() -> Option<Store> {
        let cluster = crate::variables::SpinVariables
            .get(crate::redis::CLUSTER_VARIABLE)
            .ok()?;
        if cluster.trim() != "true" {
            return None;
        }
        Store::open_default().ok()
    }

    fn key(voucher: VoucherId) -> String {
        format!("flashspin:voucher-parts:{voucher}")
    }

    pub fn recall(voucher: VoucherId) -> u8 {
        store()
            .and_then(|store| store.get(&key(voucher)).ok().flatten())
            .and_then(|value| std::str::from_utf8(&value).ok()?.parse().ok())
            .unwrap_or(1)
    }

    pub fn remember(voucher: VoucherId, parts: u8) {
        if let Some(store) = store() {
            let _ = store.set(&key(voucher), parts.to_string().as_bytes());
        }
    }
}

#[cfg(feature = "wasip3")]
mod imp {
    use std::cell::RefCell;

    use flashspin_core::ids::VoucherId;
    use flashspin_core::memory::PartCounts;

    thread_local! {
        static KNOWN: RefCell<PartCounts> = const { RefCell::new(PartCounts::new()) };
    }

    pub fn recall(voucher: VoucherId) -> u8 {
        KNOWN.with(|known| known.borrow().of(voucher))
    }

    pub fn remember(voucher: VoucherId, parts: u8) {
        KNOWN.with(|known| known.borrow_mut().learn(voucher, parts));
    }
}
