//! Voucher orders after the purchase, over HTTP (docs/ORDERS.md): paying
//! through the provider's signed webhook, redeeming, refunding, cancelling
//! and expiring at the pay deadline; every wrong change refused without a
//! trace; orders seen by their buyer only; the stock always adding up with
//! the orders that hold it, under a race and as unpaid orders expire;
//! replayed, forged, stale and late webhooks; round trips; my orders by
//! status.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashspin_core::time::{format_rfc3339, parse_rfc3339};
use flashspin_testkit::api::{
    Call, Client, NewVoucher, Order, OrderStatus, OrdersQuery, PayType, Voucher, WebhookBody,
    webhook_signature,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN_KEY, App, AppConfig, RedisServer, SmsSink, loose_config, round_trips};

/// The payment provider's webhook secret of [`shop`] apps.
const SECRET: &str = "test-webhook-secret";

/// What every voucher here costs, cents.
const PRICE: i64 = 8000;

struct Shop {
    _redis: RedisServer,
    sink: SmsSink,
    app: App,
}

/// An app with an admin key, the webhook secret, and limits loose enough
/// for many users buying and reading at once; `extra` sets more variables.
async fn shop(extra: &[(&str, &str)]) -> Shop {
    open(extra, |config| config.var("payment_webhook_secret", SECRET)).await
}

async fn open(extra: &[(&str, &str)], secret: impl FnOnce(AppConfig) -> AppConfig) -> Shop {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let mut config = secret(loose_config(&redis, &sink)).var("rate_limit_user_reads", "100000/1");
    for (name, value) in extra {
        config = config.var(name, *value);
    }
    let app = config.start().await;
    Shop {
        _redis: redis,
        sink,
        app,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn now_secs() -> u64 {
    (now_ms() / 1000) as u64
}

/// An RFC 3339 time of the API, in ms since the epoch.
fn ms(time: &str) -> i64 {
    parse_rfc3339(time).unwrap_or_else(|| panic!("not an RFC 3339 time: {time:?}"))
}

/// Sleeps until `at_ms` (the app's clock is this machine's).
async fn sleep_until(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// The Unix second that has just begun: a request sent now reaches Redis
/// within it, so a time 301 s off it is 301 s off Redis's clock, not 300.
async fn second_just_begun() -> u64 {
    sleep_until((now_ms() / 1000 + 1) * 1000 + 5).await;
    now_secs()
}

fn new_voucher(stock: i64) -> NewVoucher {
    NewVoucher {
        shop_id: "1".into(),
        title: "80 for 100".into(),
        sub_title: None,
        rules: None,
        pay_value: PRICE,
        actual_value: 10000,
        stock,
        begin_time: format_rfc3339((now_ms() / 1000 - 5) * 1000),
        end_time: format_rfc3339((now_ms() / 1000 + 3600) * 1000),
        parts: None,
    }
}

async fn create_voucher(app: &App, stock: i64) -> String {
    let reply = app.api.create_voucher(ADMIN_KEY, &new_voucher(stock)).await;
    reply.expect(201).voucher.id
}

async fn voucher(app: &App, id: &str) -> Voucher {
    app.api.voucher(id).await.expect(200).voucher
}

async fn remaining(app: &App, voucher_id: &str) -> i64 {
    voucher(app, voucher_id).await.remaining
}

/// Signs in `n` users, phones `137<first + i>`, a few at a time.
async fn users(shop: &Shop, first: usize, n: usize) -> Vec<String> {
    let phones: Vec<String> = (first..first + n).map(|i| format!("137{i:08}")).collect();
    let sessions = shop.app.api.sign_in_all(&shop.sink, &phones, 20).await;
    sessions.into_iter().map(|s| s.token).collect()
}

async fn user(shop: &Shop, phone: &str) -> String {
    shop.app.api.sign_in(&shop.sink, phone).await.token
}

/// An order and the token of its buyer, who alone may read it.
#[derive(Debug, Clone)]
struct Held {
    token: String,
    order: Order,
}

impl Held {
    fn id(&self) -> &str {
        &self.order.id
    }

    fn deadline_ms(&self) -> i64 {
        ms(self.order.pay_deadline.as_deref().expect("a pay deadline"))
    }
}

/// Buys `voucher_id` for `token`, which must succeed.
async fn buy(app: &App, token: &str, voucher_id: &str) -> Held {
    let reply = app.api.buy_voucher(token, voucher_id).await;
    Held {
        token: token.to_string(),
        order: reply.expect(201).order,
    }
}

/// The order as its buyer reads it now.
async fn read(app: &App, held: &Held) -> Order {
    app.api
        .order(&held.token, held.id())
        .await
        .expect(200)
        .order
}

fn payment(event_id: &str, order_id: &str, amount: i64, pay_type: &str) -> Value {
    json!({
        "event_id": event_id,
        "type": "payment.succeeded",
        "order_id": order_id,
        "amount": amount,
        "pay_type": pay_type,
    })
}

fn refund(event_id: &str, order_id: &str) -> Value {
    json!({"event_id": event_id, "type": "refund.succeeded", "order_id": order_id})
}

/// The webhook call for `event`, signed now with [`SECRET`].
fn webhook(app: &App, event: &Value) -> Call<WebhookBody> {
    app.api.payment_webhook(SECRET, now_secs(), event)
}

/// Pays `held` in full; the webhook must accept it.
async fn pay(app: &App, held: &Held, event_id: &str, pay_type: &str) -> Order {
    let event = payment(event_id, held.id(), held.order.amount, pay_type);
    webhook(app, &event).await.expect(200).order
}

/// The order and its voucher, as seen now.
async fn snapshot(app: &App, held: &Held) -> (Order, Voucher) {
    (
        read(app, held).await,
        voucher(app, &held.order.voucher_id).await,
    )
}

/// Sends `call`, which must be refused with `status` and `code`, and checks
/// that it changed neither the order nor its voucher.
async fn assert_refused<T: 'static>(
    app: &App,
    held: &Held,
    call: Call<T>,
    (status, code): (u16, &str),
    what: &str,
) {
    let before = snapshot(app, held).await;
    let reply = call.await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (status, code.to_string()),
        "{what}: {}",
        reply.text()
    );
    assert_eq!(
        snapshot(app, held).await,
        before,
        "{what} changed something"
    );
}

/// Sends the webhook `call`, which must be handled (200, so the provider
/// stops retrying) with `outcome` and `needs_attention`, changing neither
/// the order nor its voucher.
async fn assert_settled_unchanged(
    app: &App,
    held: &Held,
    call: Call<WebhookBody>,
    (outcome, needs_attention): (&str, bool),
    what: &str,
) {
    let before = snapshot(app, held).await;
    let body = call.await.expect(200);
    assert_eq!(
        (body.outcome.as_str(), body.needs_attention, body.replayed),
        (outcome, needs_attention, false),
        "{what}"
    );
    assert_eq!(body.order, before.0, "{what}: the order as it is");
    assert_eq!(
        snapshot(app, held).await,
        before,
        "{what} changed something"
    );
}

/// A payment the shop must return by hand, as the webhook answers it.
const DUPLICATE_PAYMENT: (&str, bool) = ("duplicate_payment", true);
const LATE_PAYMENT: (&str, bool) = ("late_payment", true);

/// Another purchase of the voucher by the buyer of `held` is refused with
/// the order they hold, as it is now.
async fn assert_already_purchased(app: &App, held: &Held, what: &str) {
    let reply = app
        .api
        .buy_voucher(&held.token, &held.order.voucher_id)
        .await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (409, "already_purchased".into()),
        "{what}: {}",
        reply.text()
    );
    assert_eq!(
        reply.error().order,
        Some(read(app, held).await),
        "{what}: the order held"
    );
}

const INVALID_STATE: (u16, &str) = (409, "invalid_state");

#[tokio::test]
async fn orders_move_only_along_their_life() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let used_v = create_voucher(app, 5).await;
    let refunded_v = create_voucher(app, 5).await;
    let cancelled_v = create_voucher(app, 5).await;

    // Bought: unpaid until order_pay_secs (900 by default) from now.
    let held = buy(app, &token, &used_v).await;
    let order = held.order.clone();
    assert_eq!(order.status, OrderStatus::Unpaid);
    assert_eq!(order.voucher_id, used_v);
    assert_eq!(order.amount, PRICE, "the voucher's pay_value");
    assert_eq!(
        (
            order.pay_type,
            &order.pay_time,
            &order.use_time,
            &order.refund_time
        ),
        (None, &None, &None, &None)
    );
    assert_eq!(order.update_time, order.create_time);
    assert_eq!(
        held.deadline_ms() - ms(&order.create_time),
        900_000,
        "deadline = create_time + order_pay_secs"
    );
    assert_eq!(read(app, &held).await, order, "read as bought");
    assert_eq!(remaining(app, &used_v).await, 4);
    assert_already_purchased(app, &held, "while unpaid").await;

    // Unpaid: neither used nor refunded.
    let use_it = || app.api.use_order(ADMIN_KEY, held.id());
    assert_refused(
        app,
        &held,
        use_it(),
        INVALID_STATE,
        "use of an unpaid order",
    )
    .await;
    let refund_it = |event: &str| webhook(app, &refund(event, held.id()));

    // Paid: the time and the way, nothing else moves.
    let paid = pay(app, &held, "evt_p1", "alipay").await;
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.pay_type, Some(PayType::Alipay));
    let pay_time = paid.pay_time.clone().expect("a pay time");
    assert!(ms(&pay_time) >= ms(&order.create_time), "{pay_time}");
    assert!(ms(&pay_time) < held.deadline_ms(), "{pay_time}");
    assert_eq!(paid.update_time, pay_time);
    assert_eq!(
        Order {
            status: OrderStatus::Unpaid,
            pay_type: None,
            pay_time: None,
            update_time: order.update_time.clone(),
            ..paid.clone()
        },
        order,
        "paying changes status, pay_type, pay_time and update_time only"
    );
    assert_eq!(read(app, &held).await, paid);
    assert_eq!(remaining(app, &used_v).await, 4, "a payment moves no unit");
    assert_already_purchased(app, &held, "while paid").await;
    let cancel_it = || app.api.cancel_order(&token, held.id());
    assert_refused(
        app,
        &held,
        cancel_it(),
        INVALID_STATE,
        "cancel of a paid order",
    )
    .await;
    let pay_again = webhook(app, &payment("evt_p2", held.id(), PRICE, "card"));
    let what = "a second payment";
    assert_settled_unchanged(app, &held, pay_again, DUPLICATE_PAYMENT, what).await;

    // Used at the counter.
    let used = use_it().await.expect(200).order;
    assert_eq!(used.status, OrderStatus::Used);
    let use_time = used.use_time.clone().expect("a use time");
    assert!(ms(&use_time) >= ms(&pay_time));
    assert_eq!(used.update_time, use_time);
    assert_eq!(
        (&used.pay_time, used.pay_type, &used.refund_time),
        (&paid.pay_time, paid.pay_type, &None)
    );
    assert_eq!(read(app, &held).await, used);
    assert_refused(app, &held, use_it(), INVALID_STATE, "use twice").await;
    assert_settled_unchanged(
        app,
        &held,
        refund_it("evt_r1"),
        ("refund_after_use", true),
        "refund of a used order",
    )
    .await;
    assert_refused(
        app,
        &held,
        cancel_it(),
        INVALID_STATE,
        "cancel of a used order",
    )
    .await;
    let pay_used = webhook(app, &payment("evt_p3", held.id(), PRICE, "card"));
    let what = "payment of a used order";
    assert_settled_unchanged(app, &held, pay_used, DUPLICATE_PAYMENT, what).await;
    assert_already_purchased(app, &held, "while used").await;
    assert_eq!(remaining(app, &used_v).await, 4);

    // Paid, then refunded.
    let held = buy(app, &token, &refunded_v).await;
    let paid = pay(app, &held, "evt_p4", "wechat").await;
    assert_eq!(paid.pay_type, Some(PayType::Wechat));
    let refunded = webhook(app, &refund("evt_r2", held.id())).await;
    let refunded = refunded.expect(200);
    assert_eq!(
        (refunded.outcome.as_str(), refunded.needs_attention),
        ("refunded", false)
    );
    let refunded = refunded.order;
    assert_eq!(refunded.status, OrderStatus::Refunded);
    let refund_time = refunded.refund_time.clone().expect("a refund time");
    assert!(ms(&refund_time) >= ms(paid.pay_time.as_deref().unwrap()));
    assert_eq!(refunded.update_time, refund_time);
    assert_eq!(
        (&refunded.pay_time, refunded.pay_type, &refunded.use_time),
        (&paid.pay_time, paid.pay_type, &None)
    );
    assert_eq!(read(app, &held).await, refunded);
    let use_it = app.api.use_order(ADMIN_KEY, held.id());
    assert_refused(app, &held, use_it, INVALID_STATE, "use of a refunded order").await;
    let again = webhook(app, &refund("evt_r3", held.id()));
    let nothing_to_do = ("already_refunded", false);
    assert_settled_unchanged(app, &held, again, nothing_to_do, "a second refund").await;
    let cancel = app.api.cancel_order(&token, held.id());
    assert_refused(
        app,
        &held,
        cancel,
        INVALID_STATE,
        "cancel of a refunded order",
    )
    .await;
    let pay_refunded = webhook(app, &payment("evt_p5", held.id(), PRICE, "card"));
    let what = "payment of a refunded order";
    assert_settled_unchanged(app, &held, pay_refunded, DUPLICATE_PAYMENT, what).await;
    assert_already_purchased(app, &held, "while refunded").await;
    assert_eq!(
        remaining(app, &refunded_v).await,
        4,
        "a refund keeps the unit"
    );

    // Cancelled by its buyer: the unit is back at once, and they may buy again.
    let held = buy(app, &token, &cancelled_v).await;
    assert_eq!(remaining(app, &cancelled_v).await, 4);
    let cancelled = app.api.cancel_order(&token, held.id()).await;
    let cancelled = cancelled.expect(200).order;
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert!(ms(&cancelled.update_time) >= ms(&held.order.create_time));
    assert_eq!(
        (
            cancelled.pay_type,
            &cancelled.pay_time,
            &cancelled.use_time,
            &cancelled.refund_time
        ),
        (None, &None, &None, &None)
    );
    assert_eq!(read(app, &held).await, cancelled);
    assert_eq!(remaining(app, &cancelled_v).await, 5, "the unit is back");
    let cancel = app.api.cancel_order(&token, held.id());
    assert_refused(app, &held, cancel, INVALID_STATE, "cancel twice").await;
    let pay_cancelled = webhook(app, &payment("evt_p6", held.id(), PRICE, "card"));
    let what = "payment of a cancelled order";
    assert_settled_unchanged(app, &held, pay_cancelled, LATE_PAYMENT, what).await;
    let use_it = app.api.use_order(ADMIN_KEY, held.id());
    assert_refused(
        app,
        &held,
        use_it,
        INVALID_STATE,
        "use of a cancelled order",
    )
    .await;
    let refund_it = webhook(app, &refund("evt_r4", held.id()));
    assert_settled_unchanged(
        app,
        &held,
        refund_it,
        ("refund_recorded", false),
        "refund of a cancelled order",
    )
    .await;
    let again = buy(app, &token, &cancelled_v).await;
    assert_ne!(again.id(), held.id());
    assert_eq!(again.order.status, OrderStatus::Unpaid);
    assert_eq!(remaining(app, &cancelled_v).await, 4);
    assert_eq!(
        read(app, &held).await,
        cancelled,
        "the old order stays cancelled"
    );
}

#[tokio::test]
async fn only_the_buyer_reads_or_cancels_an_order() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let alice = user(&shop, "13800000001").await;
    let bob = user(&shop, "13800000002").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &alice, &voucher_id).await;
    let not_found = (404, "not_found");

    let bob_reads = app.api.order(&bob, held.id());
    assert_refused(app, &held, bob_reads, not_found, "another user's read").await;
    let bob_cancels = app.api.cancel_order(&bob, held.id());
    assert_refused(app, &held, bob_cancels, not_found, "another user's cancel").await;
    let unauthorized = (401, "unauthorized");
    let path = format!("/api/orders/{}", held.id());
    let anonymous = app.api.get(&path);
    assert_refused(app, &held, anonymous, unauthorized, "a read with no token").await;
    let anonymous = app.api.request(Method::POST, &format!("{path}/cancel"));
    assert_refused(
        app,
        &held,
        anonymous,
        unauthorized,
        "a cancel with no token",
    )
    .await;
    let use_path = format!("/api/admin/orders/{}/use", held.id());
    for key in [None, Some(alice.as_str()), Some("wrong")] {
        let mut call = app.api.request(Method::POST, &use_path);
        if let Some(key) = key {
            call = call.bearer(key);
        }
        assert_refused(app, &held, call, unauthorized, &format!("use with {key:?}")).await;
    }

    // Ids no order has, and ids that are no ids at all.
    let unknown = ((1u64 << 32) + 1).to_string();
    for id in [
        unknown.as_str(),
        "0",
        "abc",
        "-1",
        "1.5",
        "99999999999999999999999",
    ] {
        for (what, reply) in [
            ("read", app.api.order(&alice, id).await),
            ("cancel", app.api.cancel_order(&alice, id).await),
            ("use", app.api.use_order(ADMIN_KEY, id).await),
        ] {
            assert_eq!(
                (reply.status, reply.error_code()),
                (404, "not_found".into()),
                "{what} of {id}: {}",
                reply.text()
            );
        }
    }
    let unknown_payment = webhook(app, &payment("evt_unknown", &unknown, PRICE, "card"));
    assert_refused(
        app,
        &held,
        unknown_payment,
        not_found,
        "payment of no order",
    )
    .await;
    assert_eq!(read(app, &held).await, held.order, "untouched");
    assert_eq!(app.api.cancel_order(&alice, held.id()).await.status, 200);
}

/// The known orders, each read by its buyer, then the voucher. `remaining`
/// is read last: the orders seen paid are still paid when it is read (no
/// order is refunded here), so `remaining` + paid cannot exceed the stock
/// however orders change in between; read first, it could (a unit counted
/// in `remaining`, then bought and paid before its order is read).
struct Sample {
    remaining: i64,
    statuses: Vec<OrderStatus>,
    /// When the first request went out and the last answer came, ms.
    from_ms: i64,
    to_ms: i64,
}

impl Sample {
    fn count(&self, wanted: &[OrderStatus]) -> i64 {
        self.statuses.iter().filter(|s| wanted.contains(s)).count() as i64
    }

    /// Orders holding a unit: unpaid (the app reads one past its deadline
    /// as expired), paid, used or refunded.
    fn active(&self) -> i64 {
        use OrderStatus::*;
        self.count(&[Unpaid, Paid, Used, Refunded])
    }

    /// What holds at every moment, even while orders change between the
    /// sample's requests.
    fn assert_bounded(&self, stock: i64, what: &str) {
        use OrderStatus::*;
        let kept = self.count(&[Paid, Used, Refunded]);
        assert!(
            (0..=stock).contains(&self.remaining),
            "{what}: remaining {}",
            self.remaining
        );
        assert!(
            self.remaining + kept <= stock,
            "{what}: remaining {} + paid {kept} > {stock}",
            self.remaining
        );
    }
}

async fn sample(api: &Client, voucher_id: &str, orders: &[Held]) -> Sample {
    let from_ms = now_ms();
    let reads = orders
        .iter()
        .map(|h| api.order(&h.token, h.id()).into_future());
    let statuses = futures::future::join_all(reads)
        .await
        .iter()
        .map(|reply| reply.expect(200).order.status)
        .collect();
    let remaining = api.voucher(voucher_id).await.expect(200).voucher.remaining;
    Sample {
        remaining,
        statuses,
        from_ms,
        to_ms: now_ms(),
    }
}

/// Samples until told to stop, checking each sample's bounds; returns how
/// many samples it took.
async fn sampler(
    api: Client,
    voucher_id: String,
    stock: i64,
    known: Arc<Mutex<Vec<Held>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut samples = 0;
    while !stop.load(Ordering::SeqCst) {
        let orders = known.lock().unwrap().clone();
        let s = sample(&api, &voucher_id, &orders).await;
        s.assert_bounded(
            stock,
            &format!("sample {samples} of {} orders", orders.len()),
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    samples
}

/// A sample that must add up exactly (`remaining` + active orders =
/// `stock`): taken while nothing is bought, paid or cancelled, and retaken
/// until no pay deadline falls within it (an order read unpaid just before
/// its deadline, then its unit read back in `remaining`, would count twice).
async fn settled_sample(
    api: &Client,
    voucher_id: &str,
    stock: i64,
    orders: &[Held],
    what: &str,
) -> Sample {
    const CLOCK_SLACK_MS: i64 = 100;
    for _ in 0..100 {
        let s = sample(api, voucher_id, orders).await;
        s.assert_bounded(stock, what);
        let crossed = orders.iter().any(|h| {
            (s.from_ms - CLOCK_SLACK_MS..=s.to_ms + CLOCK_SLACK_MS).contains(&h.deadline_ms())
        });
        if !crossed {
            assert_eq!(
                s.remaining + s.active(),
                stock,
                "{what}: remaining {} + active {}",
                s.remaining,
                s.active()
            );
            return s;
        }
    }
    panic!("{what}: every sample crossed a pay deadline");
}

#[tokio::test]
async fn a_thousand_buyers_race_for_fifty_units_and_unpaid_ones_come_back() {
    const STOCK: i64 = 50;
    // 1,000 purchases take about 1.5 s on two cores, and over 4 s with
    // other races running beside it; the 50 units go in the race's first
    // moments: with less time to pay, orders could expire before it ends
    // and their units be sold again.
    // Units come back and are sold again at once here: a warm instance's
    // memory of the voucher sold out (tests/vouchers.rs) is turned off.
    let shop = shop(&[("order_pay_secs", "8"), ("refusal_memory_ms", "0")]).await;
    let app = &shop.app;
    let tokens = users(&shop, 0, 1000).await;
    let voucher_id = create_voucher(app, STOCK).await;
    let known: Arc<Mutex<Vec<Held>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = tokio::spawn(sampler(
        app.api.clone(),
        voucher_id.clone(),
        STOCK,
        known.clone(),
        stop.clone(),
    ));

    // 1,000 buyers at once; every other winner pays as soon as they have
    // their order, the others never do. At most 800 are in flight: Spin
    // 4.0.2 refuses (500) requests beyond 1,000 component instances at
    // once, and the sampler and the payments need some too.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(800));
    let tasks: Vec<_> = tokens
        .iter()
        .map(|token| {
            let buy = app.api.buy_voucher(token, &voucher_id).into_future();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                let _slot = in_flight.acquire_owned().await.unwrap();
                buy.await
            })
        })
        .collect();
    let (mut payers, mut idlers): (Vec<Held>, Vec<Held>) = (Vec::new(), Vec::new());
    let mut payments = Vec::new();
    let mut losers: Vec<&String> = Vec::new();
    let mut refusals: HashMap<String, usize> = HashMap::new();
    for (token, task) in tokens.iter().zip(tasks) {
        let reply = task.await.unwrap();
        match reply.status {
            201 => {
                let held = Held {
                    token: token.clone(),
                    order: reply.body().order,
                };
                known.lock().unwrap().push(held.clone());
                if payers.len() == idlers.len() {
                    let event = format!("evt_race_{}", payers.len());
                    let event = payment(&event, held.id(), PRICE, "wechat");
                    payments.push(tokio::spawn(webhook(app, &event).into_future()));
                    payers.push(held);
                } else {
                    idlers.push(held);
                }
            }
            409 => {
                *refusals.entry(reply.error_code()).or_default() += 1;
                losers.push(token);
            }
            status => panic!("unexpected {status}: {}\n{}", reply.text(), app.logs()),
        }
    }
    let race_over = now_ms();
    let winners: Vec<Held> = payers.iter().chain(&idlers).cloned().collect();
    let first_deadline = winners.iter().map(Held::deadline_ms).min().unwrap();
    assert!(
        race_over < first_deadline,
        "the race outlasted order_pay_secs, so units came back during it: \
         the counts below cannot hold on a machine this slow"
    );
    assert_eq!(winners.len(), 50, "{refusals:?}");
    assert_eq!(refusals, HashMap::from([("sold_out".to_string(), 950)]));
    let ids: HashSet<&str> = winners.iter().map(Held::id).collect();
    assert_eq!(ids.len(), 50);
    for task in payments {
        let reply = task.await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "paid before the deadline: {}\n{}",
            reply.text(),
            app.logs()
        );
        assert_eq!(reply.body().order.status, OrderStatus::Paid);
    }
    let s = settled_sample(&app.api, &voucher_id, STOCK, &winners, "paid").await;
    assert_eq!(s.count(&[OrderStatus::Paid]), 25);

    // A second after the last deadline, the unpaid orders have expired and
    // their 25 units are on sale again, to exactly 25 new buyers.
    let last_deadline = winners.iter().map(Held::deadline_ms).max().unwrap();
    sleep_until(last_deadline + 1000).await;
    assert_eq!(remaining(app, &voucher_id).await, 25);
    let s = settled_sample(&app.api, &voucher_id, STOCK, &winners, "expired").await;
    assert_eq!(s.statuses[..25], [OrderStatus::Paid; 25]);
    assert_eq!(s.statuses[25..], [OrderStatus::Expired; 25]);
    let late: Vec<&String> = losers[..26].to_vec();
    let buys = late
        .iter()
        .map(|token| app.api.buy_voucher(token, &voucher_id).into_future());
    let mut newcomers: Vec<Held> = Vec::new();
    let mut refused: Vec<(&String, String)> = Vec::new();
    for (token, reply) in late.iter().zip(futures::future::join_all(buys).await) {
        match reply.status {
            201 => newcomers.push(Held {
                token: token.to_string(),
                order: reply.body().order,
            }),
            _ => refused.push((token, format!("{} {}", reply.status, reply.error_code()))),
        }
    }
    known.lock().unwrap().extend(newcomers.iter().cloned());
    assert_eq!(newcomers.len(), 25, "{refused:?}");
    let [(shut_out, refusal)] = &refused[..] else {
        panic!("{refused:?}");
    };
    assert_eq!(refusal, "409 sold_out");
    // An expired order does not hold its buyer back: there is just no stock.
    let idler = app.api.buy_voucher(&idlers[0].token, &voucher_id).await;
    assert_eq!(
        (idler.status, idler.error_code()),
        (409, "sold_out".into()),
        "{}",
        idler.text()
    );

    // The newcomers cancel; the buyers whose orders expired buy again.
    let cancels = newcomers
        .iter()
        .map(|h| app.api.cancel_order(&h.token, h.id()).into_future());
    for reply in futures::future::join_all(cancels).await {
        assert_eq!(reply.expect(200).order.status, OrderStatus::Cancelled);
    }
    assert_eq!(remaining(app, &voucher_id).await, 25, "back at once");
    let buys = idlers
        .iter()
        .map(|h| app.api.buy_voucher(&h.token, &voucher_id).into_future());
    let mut again: Vec<Held> = Vec::new();
    for (old, reply) in idlers.iter().zip(futures::future::join_all(buys).await) {
        let order = reply.expect(201).order;
        assert_ne!(order.id, old.order.id);
        again.push(Held {
            token: old.token.clone(),
            order,
        });
    }
    known.lock().unwrap().extend(again.iter().cloned());
    let all: Vec<Held> = known.lock().unwrap().clone();
    assert_eq!(all.len(), 100);
    let straggler = app.api.buy_voucher(shut_out, &voucher_id).await;
    assert_eq!(straggler.error_code(), "sold_out");
    settled_sample(&app.api, &voucher_id, STOCK, &all, "bought again").await;

    // Those expire too; then only the paid half holds units.
    let last_deadline = again.iter().map(Held::deadline_ms).max().unwrap();
    sleep_until(last_deadline + 1000).await;
    let s = settled_sample(&app.api, &voucher_id, STOCK, &all, "all expired").await;
    assert_eq!(s.remaining, 25);
    use OrderStatus::*;
    let by_status = [Paid, Expired, Cancelled].map(|status| s.count(&[status]));
    assert_eq!(by_status, [25, 50, 25], "{:?}", s.statuses);
    let mine = app
        .api
        .my_orders(&idlers[0].token, &OrdersQuery::default())
        .await;
    let statuses: Vec<_> = mine.expect(200).orders.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Expired, Expired], "newest first, both expired");

    stop.store(true, Ordering::SeqCst);
    let samples = sampling.await.unwrap();
    assert!(samples >= 10, "only {samples} samples");
}

#[tokio::test]
async fn a_webhook_replayed_twenty_times_at_once_pays_once() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &token, &voucher_id).await;

    let event = payment("evt_replayed", held.id(), PRICE, "card");
    let signed_at = now_secs();
    let replays = (0..20).map(|_| {
        app.api
            .payment_webhook(SECRET, signed_at, &event)
            .into_future()
    });
    let answers = futures::future::join_all(replays).await;
    let orders: Vec<Order> = answers.iter().map(|a| a.expect(200).order).collect();
    let paid = orders[0].clone();
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.pay_type, Some(PayType::Card));
    assert!(paid.pay_time.is_some());
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(order, &paid, "answer {i}: the same order, paid once");
    }
    assert_eq!(read(app, &held).await, paid);
    // Later, the same event again: the same answer.
    let later = webhook(app, &event).await;
    assert_eq!(later.expect(200).order, paid);
    assert_eq!(remaining(app, &voucher_id).await, 4);

    let other = webhook(app, &payment("evt_other", held.id(), PRICE, "card"));
    let what = "another payment event";
    assert_settled_unchanged(app, &held, other, DUPLICATE_PAYMENT, what).await;
}

#[tokio::test]
async fn webhooks_without_a_valid_signature_change_nothing() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &token, &voucher_id).await;
    let invalid = (401, "invalid_signature");
    let event = payment("evt_signed", held.id(), PRICE, "card");
    let body = event.to_string().into_bytes();
    let raw = |signature: &str, body: &[u8]| app.api.payment_webhook_raw(signature, body.to_vec());

    let forged = app
        .api
        .payment_webhook("not-the-secret", now_secs(), &event);
    assert_refused(app, &held, forged, invalid, "forged").await;
    let now = second_just_begun().await;
    let stale = app.api.payment_webhook(SECRET, now - 301, &event);
    assert_refused(app, &held, stale, invalid, "signed 301 s ago").await;
    let now = second_just_begun().await;
    let early = app.api.payment_webhook(SECRET, now + 301, &event);
    assert_refused(app, &held, early, invalid, "signed 301 s ahead").await;

    let now = now_secs();
    let signature = webhook_signature(SECRET, now, &body);
    let tampered = payment("evt_signed", held.id(), PRICE, "alipay").to_string();
    let call = raw(&signature, tampered.as_bytes());
    assert_refused(app, &held, call, invalid, "body changed after signing").await;
    let retimed = signature.replace(&format!("t={now}"), &format!("t={}", now - 1));
    assert_refused(
        app,
        &held,
        raw(&retimed, &body),
        invalid,
        "time changed after signing",
    )
    .await;
    let hex = signature.split_once("v1=").unwrap().1;
    for header in [
        String::new(),
        format!("t={now}"),
        format!("v1={hex}"),
        format!("t={now},v1={}", &hex[..62]),
        format!("t={now},v1=zz{}", &hex[2..]),
        format!("t={now},v0={hex}"),
        "garbage".to_string(),
    ] {
        let call = raw(&header, &body);
        assert_refused(app, &held, call, invalid, &format!("header {header:?}")).await;
    }
    let unsigned = app
        .api
        .request(Method::POST, "/api/payments/webhook")
        .header("content-type", "application/json")
        .body(body.clone());
    assert_refused(app, &held, unsigned, invalid, "no signature header").await;

    // None of that spent the event: signed right, even 299 s ago, it pays.
    let now = second_just_begun().await;
    let fresh = app.api.payment_webhook(SECRET, now - 299, &event).await;
    let paid = fresh.expect(200).order;
    assert_eq!(paid.status, OrderStatus::Paid);
}

#[tokio::test]
async fn without_a_webhook_secret_every_webhook_is_refused() {
    let shop = open(&[], |config| config).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &token, &voucher_id).await;
    let event = payment("evt_1", held.id(), PRICE, "card");
    for secret in ["", SECRET, "anything"] {
        let call = app.api.payment_webhook(secret, now_secs(), &event);
        let what = format!("signed with {secret:?}");
        assert_refused(app, &held, call, (401, "invalid_signature"), &what).await;
    }
    assert_eq!(read(app, &held).await.status, OrderStatus::Unpaid);
}

#[tokio::test]
async fn payments_must_match_an_order_and_its_amount() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &token, &voucher_id).await;

    let unknown = ((1u64 << 32) + 1).to_string();
    let reply = webhook(app, &payment("evt_1", &unknown, PRICE, "card")).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (404, "not_found".into()),
        "{}",
        reply.text()
    );
    for (i, amount) in [PRICE - 1, PRICE + 1, 0, 1].into_iter().enumerate() {
        let event = payment(&format!("evt_amount_{i}"), held.id(), amount, "card");
        let call = webhook(app, &event);
        let what = format!("paying {amount} for {PRICE}");
        assert_settled_unchanged(app, &held, call, ("amount_mismatch", true), &what).await;
    }
    let paid = pay(app, &held, "evt_right", "card").await;
    assert_eq!(paid.status, OrderStatus::Paid);
}

#[tokio::test]
async fn late_payments_are_handled_logged_once_and_listed_for_the_operator() {
    let shop = shop(&[("order_pay_secs", "2")]).await;
    let app = &shop.app;
    let alice = user(&shop, "13800000001").await;
    let bob = user(&shop, "13800000002").await;
    // Two vouchers, so that the expiry does not show in the cancelled
    // order's voucher while its payment is looked at.
    let voucher_id = create_voucher(app, 1).await;
    let other_voucher = create_voucher(app, 1).await;
    let expiring = buy(app, &alice, &voucher_id).await;
    let cancelled = buy(app, &bob, &other_voucher).await;
    assert_eq!(
        expiring.deadline_ms() - ms(&expiring.order.create_time),
        2000
    );

    // After a cancel: handled (200, so the provider stops), nothing moves.
    let reply = app.api.cancel_order(&bob, cancelled.id()).await;
    assert_eq!(reply.expect(200).order.status, OrderStatus::Cancelled);
    let late = webhook(
        app,
        &payment("evt_after_cancel", cancelled.id(), PRICE, "card"),
    );
    let what = "payment after cancel";
    assert_settled_unchanged(app, &cancelled, late, LATE_PAYMENT, what).await;
    assert_eq!(remaining(app, &other_voucher).await, 1);

    // After the deadline: the voucher's next read has the unit back.
    assert_eq!(remaining(app, &voucher_id).await, 0);
    sleep_until(expiring.deadline_ms() + 1000).await;
    assert_eq!(remaining(app, &voucher_id).await, 1, "the unit is back");
    let expired = read(app, &expiring).await;
    assert_eq!(expired.status, OrderStatus::Expired);
    assert_eq!((&expired.pay_time, expired.pay_type), (&None, None));
    let late = webhook(app, &payment("evt_late", expiring.id(), PRICE, "alipay"));
    let what = "payment after expiry";
    assert_settled_unchanged(app, &expiring, late, LATE_PAYMENT, what).await;
    // The provider's retry of the same event: the same answer, replayed,
    // and neither logged nor listed again.
    let retried = webhook(app, &payment("evt_late", expiring.id(), PRICE, "alipay")).await;
    let retried = retried.expect(200);
    assert_eq!(
        (retried.outcome.as_str(), retried.replayed),
        ("late_payment", true)
    );
    // The shop returns it; the provider's refund is noted, nothing to do.
    let refund_it = webhook(app, &refund("evt_refund_late", expiring.id()));
    let noted = ("refund_recorded", false);
    let what = "refund of an expired order";
    assert_settled_unchanged(app, &expiring, refund_it, noted, what).await;
    let cancel = app.api.cancel_order(&alice, expiring.id());
    assert_refused(
        app,
        &expiring,
        cancel,
        INVALID_STATE,
        "cancel of an expired order",
    )
    .await;

    for (event, order) in [
        ("evt_late", expiring.id()),
        ("evt_after_cancel", cancelled.id()),
    ] {
        let needle = format!("payment event {event} for order {order}");
        let logs = app.logs_containing(&needle).await;
        let lines: Vec<_> = logs.lines().filter(|l| l.contains(&needle)).collect();
        assert!(
            lines.len() == 1 && lines[0].contains("late_payment, act on it by hand"),
            "one log line for {needle}:\n{logs}"
        );
    }

    // The operator's list: both, newest first, and nothing else.
    let listed = app.api.payment_attention(ADMIN_KEY).await.expect(200);
    assert_eq!(listed.count, 2);
    let seen: Vec<_> = listed
        .events
        .iter()
        .map(|e| {
            (
                e.event_id.as_str(),
                e.order_id.as_str(),
                e.outcome.as_str(),
                e.amount,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("evt_late", expiring.id(), "late_payment", Some(PRICE)),
            (
                "evt_after_cancel",
                cancelled.id(),
                "late_payment",
                Some(PRICE)
            ),
        ]
    );
    assert_eq!(listed.events[1].voucher_id, other_voucher);
    let refused = app.api.payment_attention("not-the-key").await;
    assert_eq!(refused.status, 401);

    // The buyer sees it expired, and may buy again.
    let query = OrdersQuery {
        status: Some(OrderStatus::Expired),
        ..OrdersQuery::default()
    };
    let mine = app.api.my_orders(&alice, &query).await.expect(200).orders;
    assert_eq!(mine, [expired]);
    let again = buy(app, &alice, &voucher_id).await;
    assert_eq!(again.order.status, OrderStatus::Unpaid);
}

#[tokio::test]
async fn refused_purchases_and_webhooks_take_two_round_trips() {
    if crate::harness::is_real_spin() {
        return; // The count comes from flashspin's request log.
    }
    let shop = shop(&[]).await;
    let app = &shop.app;
    let alice = user(&shop, "13800000001").await;
    let bob = user(&shop, "13800000002").await;
    let voucher_id = create_voucher(app, 1).await;
    // The first of each kind of request loads its scripts (EVALSHA, then
    // EVAL): the counts below skip it.
    let held = buy(app, &alice, &voucher_id).await;
    for _ in 0..2 {
        let reply = app.api.buy_voucher(&bob, &voucher_id).await;
        assert_eq!(reply.error_code(), "sold_out");
    }
    let trips = round_trips(&app.logs(), "buy-voucher");
    assert_eq!(trips.len(), 3, "{trips:?}");
    if crate::harness::is_wasip3_build() {
        // The warm instance remembers the voucher sold out: the gate alone.
        assert_eq!(
            trips[1..],
            [2, 1],
            "sold out: the gate and the purchase, then the gate"
        );
    } else {
        assert_eq!(trips[1..], [2, 2], "sold out: the gate, the purchase");
    }

    pay(app, &held, "evt_1", "card").await;
    assert_eq!(webhook(app, &refund("evt_2", held.id())).await.status, 200);
    let replay = webhook(app, &refund("evt_2", held.id())).await;
    assert_eq!(replay.status, 200);
    let second = webhook(app, &payment("evt_3", held.id(), PRICE, "card")).await;
    assert_eq!(second.expect(200).outcome, "duplicate_payment");
    // Forged: refused before Redis is asked anything.
    let forged = app
        .api
        .payment_webhook("forged", now_secs(), &refund("e", held.id()));
    assert_eq!(forged.await.status, 401);
    let trips = round_trips(&app.logs(), "payments");
    assert_eq!(trips.len(), 5, "{trips:?}");
    assert_eq!(
        trips[1..],
        [2, 2, 2, 0],
        "the order's voucher and Redis's clock, then the change; none when forged"
    );
}

#[tokio::test]
async fn my_orders_filter_by_status() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let other = user(&shop, "13800000002").await;
    let mut held = Vec::new();
    for _ in 0..6 {
        let voucher_id = create_voucher(app, 5).await;
        held.push(buy(app, &token, &voucher_id).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Someone else's paid order is not mine.
    let theirs = buy(app, &other, &held[0].order.voucher_id).await;
    pay(app, &theirs, "evt_theirs", "card").await;
    // held[0] stays unpaid.
    pay(app, &held[1], "evt_1", "alipay").await;
    pay(app, &held[2], "evt_2", "card").await;
    let reply = app.api.use_order(ADMIN_KEY, held[2].id()).await;
    assert_eq!(reply.status, 200);
    pay(app, &held[3], "evt_3", "wechat").await;
    assert_eq!(
        webhook(app, &refund("evt_4", held[3].id())).await.status,
        200
    );
    assert_eq!(app.api.cancel_order(&token, held[4].id()).await.status, 200);
    pay(app, &held[5], "evt_5", "card").await;

    let ids = |orders: &[Order]| orders.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    use OrderStatus::*;
    for (status, expected) in [
        (Paid, vec![5, 1]),
        (Unpaid, vec![0]),
        (Used, vec![2]),
        (Refunded, vec![3]),
        (Cancelled, vec![4]),
        (Expired, vec![]),
    ] {
        let query = OrdersQuery {
            status: Some(status),
            ..OrdersQuery::default()
        };
        let page = app.api.my_orders(&token, &query).await.expect(200);
        assert!(
            page.orders.iter().all(|o| o.status == status),
            "{status:?}: {:?}",
            page.orders
        );
        let expected: Vec<String> = expected.iter().map(|&i| held[i].id().to_string()).collect();
        assert_eq!(ids(&page.orders), expected, "{status:?}, newest first");
        for order in &page.orders {
            let mine = held.iter().find(|h| h.id() == order.id).unwrap();
            assert_eq!(order, &read(app, mine).await, "as the order reads");
        }
    }
    let all = app.api.my_orders(&token, &OrdersQuery::default()).await;
    let statuses: Vec<_> = all.expect(200).orders.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Paid, Cancelled, Refunded, Used, Paid, Unpaid]);
    let bad = app
        .api
        .get("/api/me/orders?status=shipped")
        .bearer(&token)
        .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (400, "invalid_request".into())
    );
}

#[tokio::test]
async fn my_orders_show_an_order_expired_as_soon_as_it_reads_expired() {
    let shop = shop(&[("order_pay_secs", "2")]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &token, &voucher_id).await;

    // Just past the deadline, before anything else reads the voucher (a
    // read expires the order in Redis): the buyer's list says expired, as
    // the order reads, not unpaid for the rest of that second.
    sleep_until(held.deadline_ms() + 20).await;
    let unpaid = OrdersQuery {
        status: Some(OrderStatus::Unpaid),
        ..OrdersQuery::default()
    };
    let listed = app.api.my_orders(&token, &unpaid).await.expect(200).orders;
    let mine = app.api.my_orders(&token, &OrdersQuery::default()).await;
    let mine = mine.expect(200).orders;
    let order = read(app, &held).await;
    assert_eq!(order.status, OrderStatus::Expired);
    assert_eq!(listed, [], "listed as unpaid after its deadline");
    assert_eq!(mine, [order], "the list");
    assert_eq!(remaining(app, &voucher_id).await, 5);
}

#[tokio::test]
async fn a_refund_delivered_before_its_payment_refunds_the_order_when_the_payment_comes() {
    let shop = shop(&[]).await;
    let app = &shop.app;
    let token = user(&shop, "13800000001").await;
    let voucher_id = create_voucher(app, 5).await;
    let held = buy(app, &token, &voucher_id).await;

    // The refund first: handled, kept, the order still unpaid; its retries
    // get the same answer until the payment comes.
    for _ in 0..2 {
        let early = webhook(app, &refund("evt_refund", held.id()))
            .await
            .expect(200);
        assert_eq!(
            (
                early.outcome.as_str(),
                early.needs_attention,
                early.replayed
            ),
            ("refund_pending", false, false)
        );
        assert_eq!(early.order, held.order);
    }
    let paid = webhook(app, &payment("evt_pay", held.id(), PRICE, "wechat")).await;
    let paid = paid.expect(200);
    assert_eq!(
        (paid.outcome.as_str(), paid.needs_attention),
        ("paid_and_refunded", false)
    );
    assert_eq!(paid.order.status, OrderStatus::Refunded);
    assert!(paid.order.pay_time.is_some() && paid.order.refund_time.is_some());
    assert_eq!(read(app, &held).await, paid.order);
    // Not redeemable, and the unit stays sold as for any refund.
    let use_it = app.api.use_order(ADMIN_KEY, held.id());
    assert_refused(app, &held, use_it, INVALID_STATE, "use of a refunded order").await;
    assert_eq!(remaining(app, &voucher_id).await, 4);
    // The refund's retry now finds it done.
    let retry = webhook(app, &refund("evt_refund", held.id()))
        .await
        .expect(200);
    assert_eq!(retry.outcome, "refunded");
    let listed = app.api.payment_attention(ADMIN_KEY).await.expect(200);
    assert_eq!((listed.count, listed.events.len()), (0, 0));
}
