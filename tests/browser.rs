//! The shopper's and the operator's pages (docs/WEB.md) in a real headless
//! Chromium, driven over WebDriver: each test starts its own Redis, SMS
//! stand-in, app and browser, and works through the pages only.
//!
//! `FLASHSPIN_SCREENSHOTS=1` also saves the main screens to
//! docs/screenshots/.

use std::time::{Duration, Instant};

use flashspin_core::ids::GoodsId;

use crate::harness::browser::Browser;
use crate::harness::{ADMIN_KEY, App, RedisServer, SmsSink, loose_config};

struct Setup {
    // Dropped in this order: the browser first, Redis last.
    browser: Browser,
    app: App,
    sink: SmsSink,
    redis: RedisServer,
}

async fn start() -> Setup {
    let redis = RedisServer::start();
    let sink = SmsSink::start().await;
    let app = loose_config(&redis, &sink).start().await;
    let browser = Browser::start().await;
    Setup {
        browser,
        app,
        sink,
        redis,
    }
}

impl Setup {
    async fn close(self) {
        self.browser.close().await;
    }

    /// Opens `/admin` and unlocks it with the admin key.
    async fn unlock_admin(&self) {
        let b = &self.browser;
        b.goto(&self.app.url("/admin")).await;
        b.type_into("#admin-key", ADMIN_KEY).await;
        b.click("#unlock").await;
        b.wait_text("#admin-message", "Unlocked").await;
    }

    /// Fills the voucher form (on sale from a minute ago for an hour) and
    /// sends it; returns what the form's message says.
    async fn submit_voucher(&self, title: &str, stock: &str) -> String {
        let b = &self.browser;
        b.type_into("#v-title", title).await;
        b.type_into("#v-pay", "500").await;
        b.type_into("#v-actual", "1000").await;
        b.type_into("#v-stock", stock).await;
        let begin = local_input(&self.browser, -60_000).await;
        let end = local_input(&self.browser, 3_600_000).await;
        b.set_value("#v-begin", &begin).await;
        b.set_value("#v-end", &end).await;
        let before = b.text("#voucher-form-message").await;
        b.click("#voucher-form button[type=submit]").await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = b.text("#voucher-form-message").await;
            if !now.is_empty() && now != before {
                return now;
            }
            assert!(Instant::now() < deadline, "the voucher form never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates a voucher through the operator page; returns its id.
    async fn create_voucher(&self, title: &str, stock: u32) -> String {
        let said = self.submit_voucher(title, &stock.to_string()).await;
        id_after(&said, "Created voucher ")
    }

    /// Creates lottery goods through the operator page; returns its id.
    async fn create_goods(&self, title: &str, shares: u32) -> String {
        let b = &self.browser;
        b.type_into("#g-title", title).await;
        b.type_into("#g-total", &shares.to_string()).await;
        b.type_into("#g-price", "100").await;
        b.click("#goods-form button[type=submit]").await;
        let said = b
            .wait_text("#goods-form-message", "Created lottery goods ")
            .await;
        id_after(&said, "Created lottery goods ")
    }

    /// Logs in on `/` with the code the SMS stand-in received.
    async fn log_in(&self, phone: &str) {
        let b = &self.browser;
        b.goto(&self.app.url("/")).await;
        b.type_into("#phone", phone).await;
        b.click("#send-code").await;
        b.wait_text("#message", "Code sent").await;
        let code = self.code_for(phone).await;
        b.type_into("#code", &code).await;
        b.screenshot("login").await;
        b.click("#login").await;
        b.wait_text("#message", "Signed in as").await;
        b.wait_text("#signed-in", &phone[7..]).await;
    }

    async fn code_for(&self, phone: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(code) = self.sink.last_code(phone) {
                return code;
            }
            assert!(Instant::now() < deadline, "no SMS reached the stand-in");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The browser's `datetime-local` text for now + `offset_ms`, in its zone.
async fn local_input(b: &Browser, offset_ms: i64) -> String {
    b.client
        .execute(
            "const t = Date.now() + arguments[0]; \
             const d = new Date(t - new Date(t).getTimezoneOffset() * 60000); \
             return d.toISOString().slice(0, 19);",
            vec![offset_ms.into()],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// The id that follows `prefix` in a message ("Created voucher 3, ...").
fn id_after(said: &str, prefix: &str) -> String {
    let rest = said
        .split_once(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}, the page said {said:?}"))
        .1;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(!id.is_empty(), "no id in {said:?}");
    id
}

#[tokio::test]
async fn a_shopper_logs_in_buys_a_voucher_and_cancels_the_order() {
    let s = start().await;
    let b = &s.browser;
    s.unlock_admin().await;
    let id = s.create_voucher("Browser 50 off", 5).await;

    s.log_in("13812345678").await;
    let voucher = format!("[data-voucher-id=\"{id}\"]");
    b.wait_text(&format!("{voucher} .remaining"), "5 of 5 left")
        .await;
    b.wait_text(&format!("{voucher} .title"), "Browser 50 off")
        .await;
    b.screenshot("vouchers").await;
    b.click(&format!("{voucher} button.buy")).await;
    let said = b.wait_text("#message", "Bought").await;
    let order = id_after(&said, "order ");

    b.click("#nav-orders").await;
    b.wait_attr("#nav-orders", "aria-pressed", "true").await;
    let row = format!("[data-order-id=\"{order}\"]");
    b.wait_attr(&row, "data-status", "unpaid").await;
    b.wait_text(&format!("{row} .status"), "Unpaid").await;
    let deadline = b
        .attr(&format!("{row} .deadline"), "data-deadline")
        .await
        .unwrap_or_default();
    assert!(
        deadline.len() >= 20 && deadline.contains('T') && deadline.ends_with('Z'),
        "an RFC 3339 pay deadline, not {deadline:?}"
    );
    let shown = b.text(&format!("{row} .deadline")).await;
    assert!(
        !shown.is_empty() && shown != "—",
        "deadline shown: {shown:?}"
    );
    b.screenshot("orders").await;

    b.click(&format!("{row} button.cancel")).await;
    b.wait_text("#message", "is cancelled").await;
    b.wait_attr(&row, "data-status", "cancelled").await;
    b.wait_text(&format!("{row} .status"), "Cancelled").await;
    assert!(
        b.client
            .find(fantoccini::Locator::Css(&format!("{row} button.cancel")))
            .await
            .is_err(),
        "a cancelled order has no Cancel button"
    );

    // The unit is back on sale.
    b.click("#nav-vouchers").await;
    b.wait_text(&format!("{voucher} .remaining"), "5 of 5 left")
        .await;
    s.close().await;
}

#[tokio::test]
async fn the_operator_page_creates_a_voucher_the_shopper_page_lists() {
    let s = start().await;
    let b = &s.browser;
    s.unlock_admin().await;

    // The API's validation message shows next to the form.
    let said = s.submit_voucher("Too few", "0").await;
    assert!(
        said.contains("Not created") && said.contains("stock must be 1 to"),
        "{said:?}"
    );
    b.wait_attr("#voucher-form-message", "data-kind", "error")
        .await;
    b.wait_text("#admin-message", "stock must be 1 to").await;

    let said = s.submit_voucher("Operator special", "7").await;
    let id = id_after(&said, "Created voucher ");
    b.wait_attr("#voucher-form-message", "data-kind", "ok")
        .await;
    let sale = format!("#sales [data-voucher-id=\"{id}\"]");
    b.wait_text(&format!("{sale} .remaining"), "7 / 7").await;
    b.client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    b.screenshot("admin").await;

    b.goto(&s.app.url("/")).await;
    let voucher = format!("[data-voucher-id=\"{id}\"]");
    b.wait_text(&format!("{voucher} .title"), "Operator special")
        .await;
    b.wait_text(&format!("{voucher} .remaining"), "7 of 7 left")
        .await;
    s.close().await;
}

#[tokio::test]
async fn a_drawn_period_verifies_until_its_published_seed_is_changed() {
    let s = start().await;
    let b = &s.browser;
    s.unlock_admin().await;
    let id = s.create_goods("Browser phone", 3).await;

    s.log_in("13912345678").await;
    b.click("#nav-lottery").await;
    let goods = format!("[data-goods-id=\"{id}\"]");
    b.wait_attr(&format!("{goods} .progress"), "data-total", "3")
        .await;
    b.type_into(&format!("{goods} input.count"), "2").await;
    b.click(&format!("{goods} button.buy-shares")).await;
    b.wait_text("#message", "Bought 2 shares").await;
    b.wait_attr(&format!("{goods} .progress"), "data-sold", "2")
        .await;
    b.type_into(&format!("{goods} input.count"), "1").await;
    b.click(&format!("{goods} button.buy-shares")).await;
    b.wait_text("#message", "has been drawn").await;

    let period = format!("{goods} [data-period=\"1\"]");
    b.wait_text(&format!("{period} .winner"), "139****5678")
        .await;
    let code: u64 = b
        .text(&format!("{period} .winning-code"))
        .await
        .trim()
        .parse()
        .expect("a winning code");
    assert!((10_000_002..=10_000_004).contains(&code), "{code}");
    // The list shows the first purchase's codes until it is read again
    // after the second: wait for the winning code rather than the period.
    let mine = b
        .wait_text(&format!("{goods} .my-codes"), &code.to_string())
        .await;
    assert!(mine.contains("Period 1"), "{mine:?}");
    b.click(&format!("{period} button.verify")).await;
    let result = format!("{period} .verify-result");
    b.wait_attr(&result, "data-verified", "true").await;
    let text = b.text(&result).await;
    assert!(text.starts_with("verified"), "{text:?}");
    b.client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'end'})",
            vec![result.clone().into()],
        )
        .await
        .unwrap();
    b.screenshot("lottery").await;

    // Change the published seed of the drawn period: the draw no longer
    // checks out.
    let key = flashspin_core::keys::goods_period(GoodsId::parse(&id).unwrap(), 1);
    let mut conn = s.redis.conn();
    let seed: String = redis::cmd("HGET")
        .arg(&key)
        .arg("seed")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("no seed in {key}: {e}"));
    assert_eq!(seed.len(), 64, "{seed:?}");
    let last = if seed.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &seed[..63]);
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg("seed")
        .arg(&tampered)
        .query(&mut conn)
        .unwrap();

    // A fresh load of the page (the session stays) reads the period again.
    b.goto(&s.app.url("/#lottery")).await;
    b.client.refresh().await.unwrap();
    b.wait_attr("#nav-lottery", "aria-pressed", "true").await;
    b.click(&format!("{period} button.verify")).await;
    b.wait_attr(&result, "data-verified", "false").await;
    let text = b.text(&result).await;
    assert!(text.starts_with("does not verify"), "{text:?}");
    s.close().await;
}
