//! `POST /api/vouchers/:id/orders`: the flash-sale purchase. Two Redis round
//! trips: the gate (session, limits, order number), then the purchase
//! script (expired orders back on sale, window, one active order per user,
//! stock, the order, unpaid until `order_pay_secs` from now, and its event
//! in the voucher's outbox when `order_export` is set). A purchase that
//! succeeded, or found the buyer's order, takes a third, to file the order
//! under its buyer: 201 means the order is filed (see `voucher::buy`). A
//! warm instance that saw the voucher sold out or ended refuses after the
//! gate alone, for `refusal_memory_ms` (`flashspin_core::memory`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use flashspin_core::ApiError;
use flashspin_core::config::read;
use flashspin_core::gate::Buyer;
use flashspin_core::ids::VoucherId;
use flashspin_core::memory::{self, Refusals};
use flashspin_core::order::OrderExport;
use flashspin_core::ratelimit::Endpoint;
use flashspin_core::voucher;
use flashspin_spin::parts;
use flashspin_spin::request::ApiRequest;
use flashspin_spin::route::{Call, Reply, Route};
use flashspin_spin::variables::SpinVariables;
use serde_json::json;

struct BuyVoucher;

impl Route for BuyVoucher {
    const PATH: &'static str = "/api/vouchers/:id/orders";
    const METHOD: &'static str = "POST";
    const ENDPOINT: Endpoint = Endpoint::BuyVoucher;
    type Caller = Buyer;
    type Input = VoucherId;

    fn parse(req: &ApiRequest) -> Result<VoucherId, ApiError> {
        req.path_id("id")
    }

    async fn run(call: &mut Call<'_, Buyer>, voucher_id: VoucherId) -> Result<Reply, ApiError> {
        let pay_secs: u32 = read(&SpinVariables, "order_pay_secs")?;
        let bound = Duration::from_millis(read(&SpinVariables, "refusal_memory_ms")?);
        let export = OrderExport::from_vars(&SpinVariables)?;
        let (user_id, order_id) = (call.caller.user.id, call.caller.order_id);
        let memory = REFUSALS.with(Rc::clone);
        let shards = call.shards()?;
        let redis = call.redis().await?;
        let known = parts::recall(voucher_id);
        let mut learnt = known;
        let buy = voucher::buy(
            redis,
            voucher_id,
            user_id,
            order_id,
            pay_secs,
            export,
            shards,
            &mut learnt,
        );
        let result = memory::purchase(&memory, voucher_id, bound, buy).await;
        if learnt != known {
            parts::remember(voucher_id, learnt);
        }
        let order = result?;
        Ok(Reply::created(json!({"order": order.to_json()})))
    }
}

thread_local! {
    /// The instance's memory of refusals, across the requests it serves
    /// (a WASI 0.2 instance serves one).
    static REFUSALS: Rc<RefCell<Refusals>> = Rc::new(RefCell::new(Refusals::new()));
}

flashspin_spin::component!(BuyVoucher);
