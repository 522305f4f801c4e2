//! The one-yuan lottery: goods sold in periods of `total_shares` shares,
//! each share a code from `code_base + 1 ..= code_base + total_shares`,
//! drawn verifiably when a period sells out.
//!
//! A goods' data lives under its own tag `{g:<id>}`. Buying is one script
//! (`buy_lottery.lua`): it takes an index range, derives the codes from a
//! keyed permutation (`perm.lua`), extends the period's purchase digest and,
//! on the last share, draws the winner and opens the next period. Its
//! record names the buyer by a keyed pseudonym of that goods and period
//! ([`PseudonymKey`]), and every period's records are public in chain
//! order ([`period_records`]).
//! See `docs/LOTTERY.md` for how anyone can recompute a draw.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::body::JsonObject;
use crate::catalog::allocate_listed_id;
use crate::config::{Variables, read as read_var};
use crate::error::{ApiError, Conflict};
use crate::ids::{GoodsId, OrderId, UserId};
use crate::keys;
use crate::phone::mask;
use crate::redis::{Arg, Redis, RedisError, Reply};
use crate::scripts::{buy_lottery, lottery_create, lottery_mine, lottery_purchases, lottery_read};
use crate::session::hex;
use crate::shard::Shards;
use crate::time::format_rfc3339;

/// Most shares a period may have: keeps the permutation's arithmetic
/// exact in Lua's doubles (see `perm.lua`).
pub const MAX_SHARES: i64 = 10_000_000;
/// Most shares one purchase may take: a purchase's codes are computed in
/// its script, so this bounds how long it holds Redis (and the reply size).
pub const MAX_SHARES_PER_PURCHASE: u64 = 10_000;
const DEFAULT_CODE_BASE: i64 = 10_000_001;
const MAX_CODE_BASE: i64 = 1_000_000_000_000;
const MAX_PRICE: i64 = 100_000_000_000;

/// A goods to create, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGoods {
    pub title: String,
    pub total_shares: i64,
    pub share_price: i64,
    pub code_base: i64,
    /// `None`: periods follow one another for ever.
    pub max_periods: Option<i64>,
}

impl NewGoods {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let mut b = JsonObject::parse(body)?;
        let title = b.string("title")?.trim().to_string();
        let total_shares = b.integer("total_shares")?;
        let share_price = b.integer("share_price")?;
        let code_base = b
            .optional_integer("code_base")?
            .unwrap_or(DEFAULT_CODE_BASE);
        let max_periods = b.optional_integer("max_periods")?;
        b.finish()?;
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ApiError::invalid("title must have 1 to 200 characters"));
        }
        if !(1..=MAX_SHARES).contains(&total_shares) {
            return Err(ApiError::invalid(format!(
                "total_shares must be 1 to {MAX_SHARES}"
            )));
        }
        if !(0..=MAX_PRICE).contains(&share_price) {
            return Err(ApiError::invalid(format!(
                "share_price must be 0 to {MAX_PRICE} cents"
            )));
        }
        if !(0..=MAX_CODE_BASE).contains(&code_base) {
            return Err(ApiError::invalid(format!(
                "code_base must be 0 to {MAX_CODE_BASE}"
            )));
        }
        if max_periods.is_some_and(|m| !(1..=1_000_000).contains(&m)) {
            return Err(ApiError::invalid("max_periods must be 1 to 1000000"));
        }
        Ok(Self {
            title,
            total_shares,
            share_price,
            code_base,
            max_periods,
        })
    }
}

/// A goods' secret root (64 hex digits): every period's seed is made from
/// it inside Redis (`period_seed` in `scripts/sha256.lua`), so it crosses
/// the network once, when the goods is created, and no seed ever does.
fn new_root() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the CSPRNG is available");
    hex(&bytes)
}

/// Period `n`'s seed from a goods' root, as the scripts make it.
pub fn period_seed(root: &str, n: u64) -> String {
    hex(&Sha256::digest(format!("{root}:{n}").as_bytes()))
}

/// `hex(SHA-256(seed))`, the commitment published when a period opens.
pub fn commitment_of(seed: &str) -> String {
    hex(&Sha256::digest(seed.as_bytes()))
}

/// The draw, as anyone can recompute it from a period's `calculation`.
pub fn winning_code(seed: &str, purchases_digest: &str, total_shares: u64, code_base: u64) -> u64 {
    let h = crate::sha1::hex_string(format!("{seed}:{purchases_digest}").as_bytes());
    let first = u64::from_str_radix(&h[..12], 16).expect("hex digits");
    code_base + 1 + first % total_shares
}

/// The next link of a period's purchase digest.
pub fn next_digest(digest: &str, record: &str) -> String {
    crate::sha1::hex_string(format!("{digest}|{record}").as_bytes())
}

/// The key of buyers' pseudonyms: `HMAC-SHA256(id_secret,
/// "buyer-pseudonym")`. A purchase record names its buyer by a pseudonym
/// of their own for that goods and period ([`PseudonymKey::pseudonym`]),
/// never by user id or phone, so records in different periods or goods
/// cannot be tied to one another.
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    /// Derives the key from the `id_secret` variable's value.
    pub fn from_secret(id_secret: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(id_secret.as_bytes()).expect("any key length");
        mac.update(b"buyer-pseudonym");
        Self(mac.finalize().into_bytes().into())
    }

    /// From the `id_secret` variable.
    pub fn from_vars(vars: &impl Variables) -> Result<Self, ApiError> {
        Ok(Self::from_secret(&read_var::<String>(vars, "id_secret")?))
    }

    /// The buyer's key for one goods: `hex(HMAC-SHA256(key, "<user
    /// id>:<goods id>"))`, 64 hex digits. The purchase script gets this,
    /// not a pseudonym, because only the script knows which period the
    /// purchase lands in; it says nothing the script's other arguments
    /// (the user id) do not already tell whoever watches Redis.
    pub fn buyer_key(&self, user_id: UserId, goods_id: GoodsId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(format!("{user_id}:{goods_id}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The user's pseudonym in period `period` of goods `goods_id`, as
    /// `buy_lottery.lua` makes it: the first 16 hex digits of
    /// `sha1_hex(buyer_key + ":" + period)`. The same for all of a user's
    /// purchases in one period, and unrelated across periods and goods.
    pub fn pseudonym(&self, user_id: UserId, goods_id: GoodsId, period: u64) -> String {
        let key = self.buyer_key(user_id, goods_id);
        let mut h = crate::sha1::hex_string(format!("{key}:{period}").as_bytes());
        h.truncate(16);
        h
    }
}

/// The code permutation of a period (`perm.lua`), for checking a draw:
/// share index `i` has code `code_base + 1 + forward(i)`, keyed by
/// `sha1_hex(seed + ":codes")`, so anyone can work it out once the draw
/// reveals the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodePermutation {
    keys: [u64; 4],
    half: u64,
    n: u64,
}

impl CodePermutation {
    /// The permutation of a period of `total_shares` with seed `seed`.
    pub fn from_seed(seed: &str, total_shares: u64) -> Self {
        let h = crate::sha1::hex_string(format!("{seed}:codes").as_bytes());
        let keys = std::array::from_fn(|i| {
            u64::from_str_radix(&h[6 * i..6 * i + 6], 16).expect("hex digits")
        });
        let mut half_bits = 1;
        while 4u64.pow(half_bits) < total_shares {
            half_bits += 1;
        }
        Self {
            keys,
            half: 1 << half_bits,
            n: total_shares,
        }
    }

    fn round(&self, r: u64, k: u64) -> u64 {
        ((r * r + k) * 104_729 + r * 7919) % 65_521 % self.half
    }

    /// The permuted index of share index `x` (below `total_shares`).
    pub fn forward(&self, mut x: u64) -> u64 {
        loop {
            let (mut l, mut r) = (x / self.half, x % self.half);
            for &k in &self.keys {
                (l, r) = (r, l ^ self.round(r, k));
            }
            x = l * self.half + r;
            if x < self.n {
                return x;
            }
        }
    }

    /// The share index whose permuted index is `y`.
    pub fn backward(&self, mut y: u64) -> u64 {
        loop {
            let (mut l, mut r) = (y / self.half, y % self.half);
            for &k in self.keys.iter().rev() {
                (l, r) = (r ^ self.round(l, k), l);
            }
            y = l * self.half + r;
            if y < self.n {
                return y;
            }
        }
    }
}

/// How many shares one purchase asks for: 1 to [`MAX_SHARES_PER_PURCHASE`].
/// Whether the goods has that many is for its script to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareCount(u64);

impl ShareCount {
    pub fn parse(count: i64) -> Result<Self, ApiError> {
        match u64::try_from(count) {
            Ok(n @ 1..=MAX_SHARES_PER_PURCHASE) => Ok(Self(n)),
            _ => Err(ApiError::invalid(format!(
                "count must be 1 to {MAX_SHARES_PER_PURCHASE}"
            ))),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// An `idempotency-key`: 1 to 64 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        crate::body::visible_token(s, "idempotency-key").map(Self)
    }
}

/// Creates a goods with period 1 open.
pub async fn create(redis: &mut impl Redis, new: &NewGoods) -> Result<GoodsId, ApiError> {
    let id = GoodsId::new(allocate_listed_id(redis, keys::GOODS_SEQUENCE, keys::GOODS_LIST).await?)
        .ok_or_else(|| ApiError::Internal("goods sequence gave 0".into()))?;
    let root = new_root();
    let info = keys::goods_info(id);
    let first = keys::goods_period(id, 1);
    lottery_create::run(
        redis,
        &lottery_create::Keys {
            info: &info,
            first_period: &first,
        },
        &lottery_create::Args {
            title: &new.title,
            total: new.total_shares,
            price: new.share_price,
            base: new.code_base,
            max_periods: new.max_periods.unwrap_or(0),
            root: &root,
        },
    )
    .await?;
    Ok(id)
}

/// A goods and one of its periods, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodsPeriod {
    pub goods_id: GoodsId,
    pub title: String,
    pub total_shares: u64,
    pub share_price: i64,
    pub code_base: u64,
    pub max_periods: u64,
    pub current_period: u64,
    pub period: u64,
    pub sold: u64,
    pub drawn: bool,
    pub commitment: String,
    pub opened_ms: i64,
    pub draw: Option<Draw>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub seed: String,
    pub digest: String,
    pub winning_code: u64,
    pub winner: UserId,
    pub winner_purchase: String,
    pub drawn_ms: i64,
    pub participants: u64,
}

/// Reads goods `goods_id` with its period `period` (0: the current one).
pub async fn read(
    redis: &mut impl Redis,
    goods_id: GoodsId,
    period: u64,
) -> Result<Option<GoodsPeriod>, RedisError> {
    let info = keys::goods_info(goods_id);
    let period_prefix = keys::goods_period_prefix(goods_id);
    let r = lottery_read::run(
        redis,
        &lottery_read::Keys { info: &info },
        &lottery_read::Args {
            period: period as i64,
            period_prefix: &period_prefix,
        },
    )
    .await?;
    if r.outcome == lottery_read::Outcome::NotFound {
        return Ok(None);
    }
    let drawn = r.status == "drawn";
    let draw = if drawn {
        let winner = UserId::parse(&r.winner).ok_or_else(|| {
            RedisError::UnexpectedReply(format!("goods {goods_id}: drawn without a winner"))
        })?;
        Some(Draw {
            seed: r.seed,
            digest: r.digest,
            winning_code: r.winning_code as u64,
            winner,
            winner_purchase: r.winner_purchase,
            drawn_ms: r.drawn_ms,
            participants: r.participants as u64,
        })
    } else {
        None
    };
    Ok(Some(GoodsPeriod {
        goods_id,
        title: r.title,
        total_shares: r.total as u64,
        share_price: r.price,
        code_base: r.base as u64,
        max_periods: r.max_periods as u64,
        current_period: r.current_period as u64,
        period: r.period as u64,
        sold: r.sold as u64,
        drawn,
        commitment: r.commitment,
        opened_ms: r.opened_ms,
        draw,
    }))
}

/// The signed-in user shown as a winner.
pub struct Winner {
    pub phone: String,
    pub nickname: String,
}

impl GoodsPeriod {
    fn period_summary(&self) -> Value {
        json!({
            "number": self.period,
            "sold": self.sold,
            "remaining": self.total_shares - self.sold,
            "status": if self.drawn { "drawn" } else { "selling" },
            "commitment": self.commitment,
        })
    }

    /// `{"id", "title", "total_shares", "share_price", "period": {...}}`.
    pub fn goods_json(&self) -> Value {
        json!({
            "id": self.goods_id.to_string(),
            "title": self.title,
            "total_shares": self.total_shares,
            "share_price": self.share_price,
            "code_base": self.code_base,
            "max_periods": (self.max_periods > 0).then_some(self.max_periods),
            "period": self.period_summary(),
        })
    }

    /// The period, with its draw once drawn.
    pub fn period_json(&self, winner: Option<&Winner>) -> Value {
        let mut period = self.period_summary();
        period["goods_id"] = json!(self.goods_id.to_string());
        period["opened_at"] = json!(format_rfc3339(self.opened_ms));
        if let Some(d) = &self.draw {
            period["draw"] = json!({
                "winning_code": d.winning_code,
                "winner": {
                    "id": d.winner.to_string(),
                    "phone": winner.map(|w| mask(&w.phone)).unwrap_or_default(),
                    "nickname": winner.map(|w| w.nickname.clone()).unwrap_or_default(),
                },
                "winner_purchase_id": d.winner_purchase,
                "drawn_at": format_rfc3339(d.drawn_ms),
                "participants": d.participants,
                "calculation": {
                    "formula": "winning_code = code_base + 1 + (int(first 12 hex digits of sha1_hex(seed + \":\" + purchases_digest), 16) mod total_shares)",
                    "seed": d.seed,
                    "commitment": self.commitment,
                    "commitment_formula": "commitment = sha256_hex(seed)",
                    "purchases_digest": d.digest,
                    "digest_formula": "digest_0 = \"\"; digest_k = sha1_hex(digest_(k-1) + \"|\" + record_k) with record_k = \"<purchase id>|<pseudonym>|<first share index>|<shares>|<unix ms>\" the period's purchase records in order (GET /api/lottery/{goods_id}/periods/{n}/purchases)",
                    "code_formula": "code of share index i = code_base + 1 + permute(i), permute keyed by sha1_hex(seed + \":codes\") (docs/LOTTERY.md); the winner's purchase holds index permute^-1(winning_code - code_base - 1)",
                    "code_base": self.code_base,
                    "total_shares": self.total_shares,
                },
            });
        }
        period
    }
}

/// Reads the user record of a winner.
pub async fn winner(
    redis: &mut impl Redis,
    shards: Shards,
    user_id: UserId,
) -> Result<Option<Winner>, RedisError> {
    let key = keys::user(shards.of_user(user_id), user_id);
    let reply = redis
        .execute(
            "HMGET",
            &[
                Arg::from(key.as_str()),
                Arg::from("phone"),
                Arg::from("nickname"),
            ],
        )
        .await?;
    match reply.as_slice() {
        [Reply::Bytes(phone), Reply::Bytes(nickname)] => Ok(Some(Winner {
            phone: String::from_utf8_lossy(phone).into_owned(),
            nickname: String::from_utf8_lossy(nickname).into_owned(),
        })),
        _ => Ok(None),
    }
}

/// All goods, newest first (at most `limit`), each with its current period.
pub async fn list(redis: &mut impl Redis, limit: usize) -> Result<Vec<GoodsPeriod>, RedisError> {
    let ids = redis
        .execute(
            "ZRANGE",
            &[
                Arg::from(keys::GOODS_LIST),
                Arg::Int(0),
                Arg::Int(limit as i64 - 1),
                Arg::from("REV"),
            ],
        )
        .await?;
    let mut goods = Vec::with_capacity(ids.len());
    for id in ids {
        let Reply::Bytes(b) = id else { continue };
        let Some(id) = std::str::from_utf8(&b).ok().and_then(GoodsId::parse) else {
            continue;
        };
        if let Some(g) = read(redis, id, 0).await? {
            goods.push(g);
        }
    }
    Ok(goods)
}

/// A purchase of shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub id: OrderId,
    pub goods_id: GoodsId,
    pub period: u64,
    pub requested: u64,
    pub codes: Vec<u64>,
    pub period_sold_out: bool,
    pub create_ms: i64,
    /// The receipt: the period's commitment, this purchase's record and
    /// the period's digest after it.
    pub commitment: String,
    pub record: String,
    pub digest: String,
}

impl Purchase {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "goods_id": self.goods_id.to_string(),
            "period": self.period,
            "requested": self.requested,
            "allocated": self.codes.len(),
            "codes": self.codes,
            "period_sold_out": self.period_sold_out,
            "create_time": format_rfc3339(self.create_ms),
            "commitment": self.commitment,
            "record": self.record,
            "digest": self.digest,
        })
    }
}

/// Buys up to `count` shares of the goods' open period; the purchase's
/// record names the buyer by their pseudonym for that period under
/// `pseudonyms`.
pub async fn buy(
    redis: &mut impl Redis,
    goods_id: GoodsId,
    user_id: UserId,
    pseudonyms: &PseudonymKey,
    count: u64,
    purchase_id: OrderId,
    idempotency_key: Option<&IdempotencyKey>,
) -> Result<Purchase, ApiError> {
    let info = keys::goods_info(goods_id);
    let idempotency = match idempotency_key {
        Some(k) => keys::goods_idempotency(goods_id, user_id, &k.0),
        None => keys::goods_no_idempotency(goods_id),
    };
    let purchases = keys::goods_user_purchases(goods_id, user_id);
    let period_prefix = keys::goods_period_prefix(goods_id);
    let uid = user_id.to_string();
    let buyer_key = pseudonyms.buyer_key(user_id, goods_id);
    let pid = purchase_id.to_string();
    let reply = buy_lottery::run(
        redis,
        &buy_lottery::Keys {
            info: &info,
            idempotency: &idempotency,
            purchases: &purchases,
        },
        &buy_lottery::Args {
            user_id: &uid,
            buyer_key: &buyer_key,
            shares: count.min(i64::MAX as u64) as i64,
            purchase_id: &pid,
            has_key: idempotency_key.is_some(),
            max_count: MAX_SHARES_PER_PURCHASE as i64,
            period_prefix: &period_prefix,
        },
    )
    .await?;
    use buy_lottery::Outcome;
    let mut codes_reader = reply.codes;
    match reply.outcome {
        Outcome::Bought => {
            redis.confirm_durable().await?;
            let codes = (0..reply.allocated)
                .map(|_| codes_reader.int().map(|c| c as u64))
                .collect::<Result<_, _>>()?;
            codes_reader.finish()?;
            Ok(Purchase {
                id: OrderId::from_raw(reply.purchase_id),
                goods_id,
                period: reply.period as u64,
                requested: reply.requested as u64,
                codes,
                period_sold_out: reply.sold_out,
                create_ms: reply.created_ms,
                commitment: reply.commitment,
                record: reply.record,
                digest: reply.digest,
            })
        }
        Outcome::NotFound => Err(ApiError::NotFound),
        Outcome::Closed => Err(ApiError::Conflict(Conflict::SoldOut)),
        Outcome::BadCount => Err(ApiError::invalid(format!(
            "count must be at most total_shares ({})",
            reply.limit
        ))),
    }
}

/// One of the user's purchases, with its codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyPurchase {
    pub id: String,
    pub goods_id: GoodsId,
    pub period: u64,
    pub codes: Vec<u64>,
    pub create_ms: i64,
    /// The buyer's pseudonym, as the purchase's public record names them.
    pub pseudonym: String,
}

impl MyPurchase {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "goods_id": self.goods_id.to_string(),
            "period": self.period,
            "codes": self.codes,
            "create_time": format_rfc3339(self.create_ms),
            "pseudonym": self.pseudonym,
        })
    }
}

/// Adds a goods to the list of those the user bought shares of. A separate
/// round trip after the purchase succeeded, as for vouchers (see
/// `voucher::record_order`); repeating it is harmless.
pub async fn record_goods(
    redis: &mut impl Redis,
    shards: Shards,
    user_id: UserId,
    goods_id: GoodsId,
) -> Result<(), RedisError> {
    let key = keys::user_lottery_goods(shards.of_user(user_id), user_id);
    let member = goods_id.to_string();
    crate::page::record(redis, &key, goods_id.get() as i64, &member).await
}

/// At most this many codes in one page of a user's purchases.
pub const MAX_CODES_PER_PAGE: usize = 1000;
/// At most this many purchase records looked at per goods in one page, and
/// this many goods visited: a page's Redis work stays bounded however much
/// a user has bought, at the price of pages that may be short.
const MAX_RECORDS_SCANNED: usize = 1000;
const MAX_GOODS_PER_PAGE: usize = 10;

/// Where a page of a user's purchases ends: in goods `goods`, before
/// record `before` (none: at the goods' newest), with `skip` codes of the
/// record just before it already returned. Written `<goods>` or
/// `<goods>.<before>.<skip>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchasesCursor {
    pub goods: GoodsId,
    pub before: Option<u64>,
    pub skip: u64,
}

impl PurchasesCursor {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let n = crate::page::cursor_numbers(raw, &[1, 3])?;
        let foreign = || ApiError::invalid("cursor is not one this API handed out");
        let goods = GoodsId::new(n[0]).ok_or_else(foreign)?;
        Ok(match n[..] {
            [_, before, skip] if before > i64::MAX as u64 || skip >= MAX_SHARES_PER_PURCHASE => {
                return Err(foreign());
            }
            [_, before, skip] => Self {
                goods,
                before: Some(before),
                skip,
            },
            _ => Self {
                goods,
                before: None,
                skip: 0,
            },
        })
    }
}

impl std::fmt::Display for PurchasesCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.before {
            Some(before) => write!(f, "{}.{before}.{}", self.goods, self.skip),
            None => write!(f, "{}", self.goods),
        }
    }
}

/// What to list: one goods or all, one period or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseFilter {
    pub goods: Option<GoodsId>,
    pub period: Option<u64>,
}

/// One page of the user's purchases: goods newest first, each goods'
/// purchases newest first; at most `limit` purchases and
/// [`MAX_CODES_PER_PAGE`] codes. One round trip for the goods list (none
/// with a goods filter) and one per goods visited.
pub async fn purchases_page(
    redis: &mut impl Redis,
    shards: Shards,
    user_id: UserId,
    filter: PurchaseFilter,
    after: Option<PurchasesCursor>,
    limit: usize,
) -> Result<(Vec<MyPurchase>, Option<PurchasesCursor>), ApiError> {
    let goods_ids = match filter.goods {
        Some(goods) => {
            if after.is_some_and(|c| c.goods != goods) {
                return Err(ApiError::invalid("cursor belongs to another goods_id"));
            }
            vec![goods]
        }
        None => my_goods(redis, shards, user_id, after.map(|c| c.goods)).await?,
    };
    let mut page = Vec::new();
    let mut codes = 0;
    for (i, &goods) in goods_ids.iter().enumerate() {
        let start = after.filter(|c| c.goods == goods);
        if page.len() == limit || codes == MAX_CODES_PER_PAGE || i == MAX_GOODS_PER_PAGE {
            return Ok((
                page,
                Some(start.unwrap_or(PurchasesCursor {
                    goods,
                    before: None,
                    skip: 0,
                })),
            ));
        }
        let (mut found, next) = goods_purchases(
            redis,
            goods,
            user_id,
            filter.period,
            start,
            limit - page.len(),
            MAX_CODES_PER_PAGE.saturating_sub(codes),
        )
        .await?;
        codes += found.iter().map(|p| p.codes.len()).sum::<usize>();
        page.append(&mut found);
        if next.is_some() {
            return Ok((page, next));
        }
    }
    Ok((page, None))
}

/// The goods the user bought shares of, newest first, from `from` on: at
/// most one more than a page visits, so the page knows where to go on.
async fn my_goods(
    redis: &mut impl Redis,
    shards: Shards,
    user_id: UserId,
    from: Option<GoodsId>,
) -> Result<Vec<GoodsId>, RedisError> {
    let key = keys::user_lottery_goods(shards.of_user(user_id), user_id);
    let from = from.map(GoodsId::get);
    let reply = crate::page::newest_first(redis, &key, from, MAX_GOODS_PER_PAGE + 1, false).await?;
    Ok(reply
        .into_iter()
        .filter_map(|r| match r {
            Reply::Bytes(b) => std::str::from_utf8(&b).ok().and_then(GoodsId::parse),
            _ => None,
        })
        .collect())
}

/// Purchases of one goods from `start` on, within the budgets; the cursor
/// says where the goods' list goes on, `None` when it is done.
async fn goods_purchases(
    redis: &mut impl Redis,
    goods_id: GoodsId,
    user_id: UserId,
    period: Option<u64>,
    start: Option<PurchasesCursor>,
    max_purchases: usize,
    max_codes: usize,
) -> Result<(Vec<MyPurchase>, Option<PurchasesCursor>), RedisError> {
    let info = keys::goods_info(goods_id);
    let mine = keys::goods_user_purchases(goods_id, user_id);
    let period_prefix = keys::goods_period_prefix(goods_id);
    let reply = lottery_mine::run(
        redis,
        &lottery_mine::Keys {
            info: &info,
            purchases: &mine,
        },
        &lottery_mine::Args {
            period: period.unwrap_or(0) as i64,
            from_index: start.and_then(|c| c.before).map_or(-1, |b| b as i64),
            from_skip: start.map_or(0, |c| c.skip) as i64,
            purchase_limit: max_purchases as i64,
            code_limit: max_codes as i64,
            record_limit: MAX_RECORDS_SCANNED as i64,
            period_prefix: &period_prefix,
        },
    )
    .await?;
    let mut r = reply.purchases;
    let mut out = Vec::with_capacity(reply.count.max(0) as usize);
    for _ in 0..reply.count {
        let id = r.string()?;
        let period = r.int()? as u64;
        let create_ms = r.int()?;
        let pseudonym = r.string()?;
        let count = r.int()?;
        let codes = (0..count)
            .map(|_| r.int().map(|c| c as u64))
            .collect::<Result<_, _>>()?;
        out.push(MyPurchase {
            id,
            goods_id,
            period,
            codes,
            create_ms,
            pseudonym,
        });
    }
    r.finish()?;
    let next = (reply.next_before > 0).then_some(PurchasesCursor {
        goods: goods_id,
        before: Some(reply.next_before as u64),
        skip: reply.next_skip as u64,
    });
    Ok((out, next))
}

/// One purchase record of a period, as the public list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRecord {
    /// `<purchase id>|<pseudonym>|<first share index>|<shares>|<unix ms>`.
    pub record: String,
    /// The period's digest after this record.
    pub digest: String,
    pub codes_from: u64,
    pub count: u64,
}

impl PeriodRecord {
    pub fn to_json(&self) -> Value {
        json!({
            "record": self.record,
            "digest": self.digest,
            "codes_from": self.codes_from,
            "count": self.count,
        })
    }
}

/// `?limit=` of a period's records: 100 unless given, at most 100.
pub const RECORDS_PER_PAGE: usize = 100;

/// Parses `?limit=` of a period's records (1 to 100, as every list).
pub fn records_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(RECORDS_PER_PAGE),
        Some(raw) => Ok(crate::page::PageSize::parse(Some(raw))?.get()),
    }
}

/// Where a page of a period's records ended: the first share index of its
/// last record. Written as that number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsCursor(u64);

impl RecordsCursor {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        match crate::page::cursor_numbers(raw, &[1])?[..] {
            [n] if n < MAX_SHARES as u64 => Ok(Self(n)),
            _ => Err(ApiError::invalid("cursor is not one this API handed out")),
        }
    }
}

impl std::fmt::Display for RecordsCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One page of period `n`'s purchase records in chain order, after
/// `after`, at most `limit`: one round trip. The cursor is `None` on the
/// last page; no such goods or period is `NotFound`.
pub async fn period_records(
    redis: &mut impl Redis,
    goods_id: GoodsId,
    n: u64,
    after: Option<RecordsCursor>,
    limit: usize,
) -> Result<(Vec<PeriodRecord>, Option<RecordsCursor>), ApiError> {
    let period = keys::goods_period(goods_id, n);
    let purchases = keys::goods_period_purchases(goods_id, n);
    let reply = lottery_purchases::run(
        redis,
        &lottery_purchases::Keys {
            period: &period,
            purchases: &purchases,
        },
        &lottery_purchases::Args {
            after: after.map_or(-1, |c| c.0 as i64),
            limit: limit as i64,
        },
    )
    .await?;
    if reply.outcome == lottery_purchases::Outcome::NotFound {
        return Err(ApiError::NotFound);
    }
    let mut r = reply.records;
    let mut records = Vec::with_capacity(reply.count.max(0) as usize);
    for _ in 0..reply.count {
        records.push(PeriodRecord {
            record: r.string()?,
            digest: r.string()?,
            codes_from: r.int()? as u64,
            count: r.int()? as u64,
        });
    }
    r.finish()?;
    let next = match records.last() {
        Some(last) if reply.more => Some(RecordsCursor(last.codes_from)),
        _ => None,
    };
    Ok((records, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goods_parse_with_defaults_and_limits() {
        let g = NewGoods::parse(br#"{"title": "Phone", "total_shares": 6432, "share_price": 100}"#)
            .unwrap();
        assert_eq!((g.code_base, g.max_periods), (10_000_001, None));
        for (body, field) in [
            (
                r#"{"title": "x", "total_shares": 0, "share_price": 100}"#,
                "total_shares",
            ),
            (
                r#"{"title": "x", "total_shares": 10000001, "share_price": 100}"#,
                "total_shares",
            ),
            (
                r#"{"title": "x", "total_shares": 5, "share_price": -1}"#,
                "share_price",
            ),
            (
                r#"{"title": "x", "total_shares": 5, "share_price": 1, "max_periods": 0}"#,
                "max_periods",
            ),
            (
                r#"{"title": "", "total_shares": 5, "share_price": 1}"#,
                "title",
            ),
            (
                r#"{"title": "x", "total_shares": "5", "share_price": 1}"#,
                "total_shares",
            ),
        ] {
            match NewGoods::parse(body.as_bytes()) {
                Err(ApiError::InvalidRequest(m)) => assert!(m.contains(field), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::parse("order-42_retry").is_ok());
        for bad in ["", " a", "a b", "é", &"k".repeat(65)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seeds_come_from_the_root_and_commit_with_sha256() {
        let root = new_root();
        assert_eq!(root.len(), 64);
        let seed = period_seed(&root, 2);
        assert_eq!(seed, commitment_of(&format!("{root}:2")));
        assert_ne!(seed, period_seed(&root, 3));
        // sha256("abc")
        assert_eq!(
            commitment_of("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_worked_example_of_docs_lottery_md() {
        // The example in docs/LOTTERY.md, recomputed step by step. Its
        // pseudonyms are those of users 7 and 8 in period 1 of goods 1
        // with id_secret "example".
        let key = PseudonymKey::from_secret("example");
        let goods = GoodsId::new(1).unwrap();
        let (p7, p8) = (
            key.pseudonym(UserId::new(7).unwrap(), goods, 1),
            key.pseudonym(UserId::new(8).unwrap(), goods, 1),
        );
        assert_eq!((p7.as_str(), p8.as_str()), EXAMPLE_PSEUDONYMS);
        let r1 = format!("1001|{p7}|0|3|1767225600000");
        let r2 = format!("1002|{p8}|3|2|1767225601000");
        let d1 = next_digest("", &r1);
        let d2 = next_digest(&d1, &r2);
        assert_eq!(
            d1,
            sha1_smol::Sha1::from(format!("|{r1}")).digest().to_string()
        );
        assert_eq!([d1.as_str(), d2.as_str()], EXAMPLE_DIGESTS);
        let seed = "5f".repeat(32);
        assert_eq!(
            commitment_of(&seed),
            "ce63c4ebf143f2aade4d14b4e5d941832c7af9ef9a000df459c9b6a07f155486"
        );
        assert_eq!(
            crate::sha1::hex_string(format!("{seed}:{d2}").as_bytes()),
            EXAMPLE_DRAW_HASH
        );
        let code = winning_code(&seed, &d2, 5, 10_000_001);
        assert_eq!(code, EXAMPLE_WINNING_CODE, "digest {d2}");
        // The winning code's share index, 1, is in the first purchase
        // (indexes 0 to 2); index i has code 10000001 + 1 + forward(i).
        let perm = CodePermutation::from_seed(&seed, 5);
        assert_eq!(perm.backward(code - 10_000_002), 1);
        let codes: Vec<u64> = (0..5).map(|i| 10_000_002 + perm.forward(i)).collect();
        assert_eq!(
            codes,
            [10_000_003, 10_000_004, 10_000_005, 10_000_006, 10_000_002]
        );
    }

    /// The numbers of the documented example (see the test above).
    const EXAMPLE_PSEUDONYMS: (&str, &str) = ("56a6538dea26a450", "b7384cec7d31885c");
    const EXAMPLE_DIGESTS: [&str; 2] = [
        "40ee4e28f094232d81660fd946b2d58054029edd",
        "864a4750b2f1b04ad1d6262274b81ca253520614",
    ];
    const EXAMPLE_DRAW_HASH: &str = "2f64099d1f5dabc044ff3468b4118926aabf92c1";
    const EXAMPLE_WINNING_CODE: u64 = 10_000_004;

    #[test]
    fn pseudonyms_are_keyed_16_hex_digits_of_one_goods_and_period() {
        let key = PseudonymKey::from_secret("s");
        let (one, two) = (UserId::new(1).unwrap(), UserId::new(2).unwrap());
        let (g1, g2) = (GoodsId::new(1).unwrap(), GoodsId::new(2).unwrap());
        let a = key.pseudonym(one, g1, 1);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, key.pseudonym(one, g1, 1));
        // As the purchase script makes it from the buyer's key.
        let buyer_key = key.buyer_key(one, g1);
        assert_eq!(buyer_key.len(), 64);
        assert_eq!(
            a,
            sha1_smol::Sha1::from(format!("{buyer_key}:1"))
                .digest()
                .to_string()[..16]
        );
        // Another user, period, goods or secret: another pseudonym.
        let others = [
            key.pseudonym(two, g1, 1),
            key.pseudonym(one, g1, 2),
            key.pseudonym(one, g2, 1),
            PseudonymKey::from_secret("t").pseudonym(one, g1, 1),
        ];
        for other in others {
            assert_ne!(a, other);
        }
        // "1:11" and "11:1" must not meet.
        assert_ne!(
            key.buyer_key(one, GoodsId::new(11).unwrap()),
            key.buyer_key(UserId::new(11).unwrap(), g1)
        );
    }

    #[test]
    fn the_code_permutation_is_a_bijection_undone_by_backward() {
        for n in [1u64, 2, 5, 16, 17, 1000, 4097] {
            let p = CodePermutation::from_seed("seed", n);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let y = p.forward(i);
                assert!(!std::mem::replace(&mut seen[y as usize], true), "n {n}");
                assert_eq!(p.backward(y), i, "n {n}");
            }
        }
    }

    #[test]
    fn record_pages_take_a_limit_and_a_cursor() {
        assert_eq!(records_limit(None).unwrap(), 100);
        assert_eq!(records_limit(Some("7")).unwrap(), 7);
        for bad in ["0", "101", "x"] {
            assert!(records_limit(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(RecordsCursor::parse("42").unwrap().to_string(), "42");
        for bad in ["", "x", "1.2", "-1", "10000000"] {
            assert!(RecordsCursor::parse(bad).is_err(), "{bad}");
        }
    }
}
