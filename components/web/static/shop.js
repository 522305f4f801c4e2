// The shopper's page: login with a code, vouchers, my orders, the lottery.
// Hooks for browser tests are listed at the top of index.html.

import { api, ApiError, duration, el, localTime, money, now, poll, say } from "./api.js";

const SHOP_ID = "1";
const VOUCHER_POLL_MS = 3000;
const LOTTERY_POLL_MS = 5000;
// Drawn periods shown per goods, newest first.
const DRAWN_SHOWN = 3;

const $ = (id) => document.getElementById(id);
const message = $("message");

// ---- Session: the token lives in this tab only (sessionStorage). ----

const session = {
  token: sessionStorage.getItem("flashspin.token") || "",
  user: JSON.parse(sessionStorage.getItem("flashspin.user") || "null"),
};

function setSession(token, user) {
  session.token = token || "";
  session.user = user || null;
  if (token) {
    sessionStorage.setItem("flashspin.token", token);
    sessionStorage.setItem("flashspin.user", JSON.stringify(user));
  } else {
    sessionStorage.removeItem("flashspin.token");
    sessionStorage.removeItem("flashspin.user");
  }
  const signedIn = Boolean(session.token);
  $("login-form").hidden = signedIn;
  $("session").hidden = !signedIn;
  $("signed-in").textContent = signedIn ? `${user.nickname} (${user.phone})` : "";
  if (!signedIn) {
    orders.clear();
    renderOrders([], null, true);
    myCodes.clear();
    renderAllCodes();
  }
}

// Shows an API error in the status area, with `prefix` before the API's
// own message; a 401 also ends the session here.
function fail(prefix, e, ...extra) {
  if (!(e instanceof ApiError)) {
    say(message, "error", `${prefix}: ${e.message}`);
    return;
  }
  if (e.status === 401 && session.token) {
    setSession("", null);
    say(message, "error", `${prefix}: ${e.message}. Your session has ended; log in again.`);
    return;
  }
  let text = `${prefix}: ${e.message}`;
  if (e.code === "rate_limited" && e.retryAfter) {
    text += ` (wait ${e.retryAfter} s before trying again)`;
  }
  say(message, "error", text + ".", ...extra);
}

function needLogin(what) {
  if (session.token) return false;
  say(message, "error", `Log in first to ${what}.`);
  $("phone").focus();
  return true;
}

// ---- Login ----

let resendTimer = 0;

function startResendCountdown(secs) {
  clearInterval(resendTimer);
  const button = $("send-code");
  const label = $("resend-countdown");
  const until = Date.now() + secs * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(resendTimer);
      button.disabled = false;
      button.textContent = "Resend code";
      label.textContent = "";
      return;
    }
    button.disabled = true;
    label.textContent = `Resend in ${left} s`;
  };
  tick();
  resendTimer = setInterval(tick, 250);
}

$("send-code").addEventListener("click", async () => {
  const phone = $("phone").value.trim();
  try {
    const sent = await api("/api/auth/code", { method: "POST", body: { phone } });
    say(message, "ok", `Code sent to ${phone}. It is valid for ${Math.round(sent.expires_in / 60)} minutes.`);
    startResendCountdown(sent.resend_after);
    $("code").focus();
  } catch (e) {
    fail("Could not send the code", e);
    if (e instanceof ApiError && e.code === "rate_limited" && e.retryAfter) {
      startResendCountdown(e.retryAfter);
    }
  }
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const phone = $("phone").value.trim();
  const code = $("code").value.trim();
  try {
    const s = await api("/api/auth/login", { method: "POST", body: { phone, code } });
    setSession(s.token, s.user);
    $("code").value = "";
    say(message, "ok", `Signed in as ${s.user.nickname}.`);
    $("logout").focus();
    refreshCurrent();
  } catch (e) {
    fail("Could not log in", e);
  }
});

$("logout").addEventListener("click", async () => {
  const token = session.token;
  setSession("", null);
  say(message, "ok", "Logged out.");
  $("phone").focus();
  try {
    await api("/api/auth/logout", { method: "POST", token });
  } catch {
    // The token is dropped here whatever the server says.
  }
});

// ---- Navigation ----

const views = { vouchers: "vouchers-view", orders: "orders-view", lottery: "lottery-view" };
let current = "vouchers";

function show(view) {
  current = view in views ? view : "vouchers";
  for (const [name, id] of Object.entries(views)) {
    $(id).hidden = name !== current;
    $(`nav-${name}`).setAttribute("aria-pressed", String(name === current));
  }
  if (location.hash !== `#${current}`) history.replaceState(null, "", `#${current}`);
  refreshCurrent();
}

function refreshCurrent() {
  if (current === "vouchers") pollVouchers();
  if (current === "orders") loadOrders(true);
  if (current === "lottery") {
    pollLottery();
    loadMyCodes();
  }
}

for (const name of Object.keys(views)) {
  $(`nav-${name}`).addEventListener("click", () => show(name));
}

// ---- Vouchers ----

const vouchers = new Map(); // id -> { voucher, node }

function voucherNode(v) {
  const buy = el("button", { type: "button", class: "buy primary", text: "Buy" });
  buy.addEventListener("click", () => buyVoucher(v.id, buy));
  return el(
    "li",
    { class: "item", dataset: { voucherId: v.id } },
    el("h3", { class: "title" }),
    el("p", { class: "sub" }),
    el("p", { class: "price" }),
    el("p", { class: "remaining" }),
    el("p", { class: "countdown" }),
    el("p", { class: "rules hint" }),
    buy,
  );
}

function updateVoucher(entry) {
  const { voucher: v, node } = entry;
  const q = (c) => node.querySelector(c);
  q(".title").textContent = v.title;
  q(".sub").textContent = v.sub_title || "";
  q(".sub").hidden = !v.sub_title;
  q(".rules").textContent = v.rules || "";
  q(".rules").hidden = !v.rules;
  q(".price").textContent = `Pay ${money(v.pay_value)}, worth ${money(v.actual_value)}`;
  const remaining = q(".remaining");
  remaining.textContent = v.remaining > 0 ? `${v.remaining} of ${v.stock} left` : `Sold out (${v.stock} sold)`;
  remaining.dataset.remaining = v.remaining;
  node.dataset.status = v.status;
  updateCountdown(entry);
}

function updateCountdown({ voucher: v, node }) {
  const t = now();
  const begin = Date.parse(v.begin_time);
  const end = Date.parse(v.end_time);
  const countdown = node.querySelector(".countdown");
  let text;
  if (t < begin) text = `Starts in ${duration(begin - t)}`;
  else if (t < end) text = `On sale, ends in ${duration(end - t)}`;
  else text = "The sale has ended";
  countdown.textContent = text;
}

function renderVouchers(list) {
  const ul = $("voucher-list");
  const seen = new Set();
  for (const v of list) {
    seen.add(v.id);
    let entry = vouchers.get(v.id);
    if (!entry) {
      entry = { voucher: v, node: voucherNode(v) };
      vouchers.set(v.id, entry);
    }
    entry.voucher = v;
    updateVoucher(entry);
  }
  for (const [id, entry] of vouchers) {
    if (!seen.has(id)) {
      entry.node.remove();
      vouchers.delete(id);
    }
  }
  // Reorder only when the order changed: moving a node drops its focus.
  const order = list.map((v) => v.id);
  const shown = [...ul.children].map((n) => n.dataset.voucherId);
  if (order.join() !== shown.join()) {
    ul.replaceChildren(...order.map((id) => vouchers.get(id).node));
  }
  $("no-vouchers").hidden = list.length > 0;
}

const pollVouchers = poll(
  async () => {
    try {
      const data = await api(`/api/vouchers?shop_id=${SHOP_ID}`);
      renderVouchers(data.vouchers);
    } catch (e) {
      fail("Could not load the vouchers", e);
    }
  },
  VOUCHER_POLL_MS,
  () => current === "vouchers",
);

setInterval(() => {
  if (current === "vouchers") for (const entry of vouchers.values()) updateCountdown(entry);
}, 1000);

async function buyVoucher(id, button) {
  const title = vouchers.get(id)?.voucher.title || `voucher ${id}`;
  if (needLogin("buy")) return;
  button.disabled = true;
  try {
    const { order } = await api(`/api/vouchers/${encodeURIComponent(id)}/orders`, {
      method: "POST",
      token: session.token,
    });
    upsertOrder(order);
    say(
      message,
      "ok",
      `Bought “${title}”: order ${order.id}, ${money(order.amount)} to pay by ${localTime(order.pay_deadline)}. `,
      orderLink(order),
    );
  } catch (e) {
    if (e instanceof ApiError && e.code === "already_purchased" && e.body?.order) {
      const order = e.body.order;
      upsertOrder(order);
      fail(`You already bought “${title}”`, e, " ", orderLink(order));
    } else if (e instanceof ApiError && e.code === "sale_not_started") {
      const v = vouchers.get(id)?.voucher;
      const wait = v ? ` It starts in ${duration(Date.parse(v.begin_time) - now())}.` : "";
      fail(`Could not buy “${title}”`, e);
      message.append(wait);
    } else {
      fail(`Could not buy “${title}”`, e);
    }
  } finally {
    button.disabled = false;
    pollVouchers();
  }
}

// A button in the status area that opens My orders at that order.
function orderLink(order) {
  return el("button", {
    type: "button",
    class: "link show-order",
    dataset: { showOrder: order.id },
    text: `See order ${order.id}`,
    onclick: () => jumpToOrder(order),
  });
}

async function jumpToOrder(order) {
  show("orders");
  await ordersLoaded;
  // Not on the first page: shown anyway, from the answer that named it.
  if (!orders.has(order.id)) upsertOrder(order);
  const node = orders.get(order.id);
  if (node) {
    node.classList.add("highlight");
    node.scrollIntoView({ block: "center" });
    node.focus();
  }
}

// ---- My orders ----

const orders = new Map(); // id -> node, newest first in the list
let nextOrdersCursor = null;
let ordersLoaded = Promise.resolve();

const STATUS_TEXT = {
  unpaid: "Unpaid",
  paid: "Paid",
  used: "Used",
  refunded: "Refunded",
  cancelled: "Cancelled",
  expired: "Expired",
};

function orderNode(o) {
  const node = el(
    "li",
    { class: "item", tabindex: "-1", dataset: { orderId: o.id } },
    el("h3", { class: "title", text: `Order ${o.id}` }),
    el("p", { class: "voucher", text: `Voucher ${o.voucher_id}, ${money(o.amount)}` }),
    el("p", {}, "Status: ", el("span", { class: "status" })),
    el("p", {}, "Pay by: ", el("span", { class: "deadline" })),
    el("p", { class: "placed hint", text: `Placed ${localTime(o.create_time)}` }),
  );
  fillOrder(node, o);
  return node;
}

function fillOrder(node, o) {
  node.dataset.status = o.status;
  node.querySelector(".status").textContent = STATUS_TEXT[o.status] || o.status;
  node.querySelector(".deadline").textContent =
    o.status === "unpaid" && o.pay_deadline ? localTime(o.pay_deadline) : "—";
  node.querySelector(".deadline").dataset.deadline = o.pay_deadline || "";
  let cancel = node.querySelector("button.cancel");
  if (o.status === "unpaid" && !cancel) {
    cancel = el("button", { type: "button", class: "cancel", text: "Cancel order" });
    cancel.addEventListener("click", () => cancelOrder(o.id, cancel));
    node.append(cancel);
  } else if (o.status !== "unpaid" && cancel) {
    cancel.remove();
  }
}

function upsertOrder(o) {
  const known = orders.get(o.id);
  if (known) {
    fillOrder(known, o);
    return;
  }
  const node = orderNode(o);
  orders.set(o.id, node);
  $("order-list").prepend(node);
  $("no-orders").hidden = true;
}

function renderOrders(list, cursor, fresh) {
  const ul = $("order-list");
  if (fresh) {
    orders.clear();
    ul.replaceChildren();
  }
  for (const o of list) {
    const node = orderNode(o);
    orders.set(o.id, node);
    ul.append(node);
  }
  nextOrdersCursor = cursor;
  $("more-orders").hidden = !cursor;
  $("no-orders").hidden = orders.size > 0 || !session.token;
}

function loadOrders(fresh) {
  if (!session.token) {
    renderOrders([], null, true);
    say(message, "info", "Log in to see your orders.");
    return ordersLoaded;
  }
  const cursor = fresh ? null : nextOrdersCursor;
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  ordersLoaded = (async () => {
    try {
      const page = await api(`/api/me/orders${query}`, { token: session.token });
      renderOrders(page.orders, page.next_cursor || null, fresh);
    } catch (e) {
      fail("Could not load your orders", e);
    }
  })();
  return ordersLoaded;
}

$("refresh-orders").addEventListener("click", () => loadOrders(true));
$("more-orders").addEventListener("click", () => loadOrders(false));

async function cancelOrder(id, button) {
  button.disabled = true;
  try {
    const { order } = await api(`/api/orders/${encodeURIComponent(id)}/cancel`, {
      method: "POST",
      token: session.token,
    });
    upsertOrder(order);
    say(message, "ok", `Order ${id} is cancelled; its voucher is back on sale.`);
  } catch (e) {
    button.disabled = false;
    fail(`Could not cancel order ${id}`, e);
  }
}

// ---- Lottery ----

const goods = new Map(); // id -> { goods, node, periods: Map(n -> period) }
const myCodes = new Map(); // goods id -> Map(period -> [codes])

function goodsNode(g) {
  const count = el("input", {
    class: "count",
    type: "number",
    min: "1",
    step: "1",
    value: "1",
    inputmode: "numeric",
    id: `count-${g.id}`,
  });
  const buy = el("button", { type: "button", class: "buy-shares primary", text: "Buy shares" });
  buy.addEventListener("click", () => buyShares(g.id, count, buy));
  return el(
    "li",
    { class: "item", dataset: { goodsId: g.id } },
    el("h3", { class: "title" }),
    el("p", { class: "price" }),
    el("div", { class: "progress" }, el("progress", {}), el("span", { class: "progress-text" })),
    el("p", { class: "commitment hint" }),
    el("div", { class: "row" }, el("label", { for: `count-${g.id}`, text: "Shares" }), count, buy),
    el("h4", { text: "My codes" }),
    el("div", { class: "my-codes" }),
    el("h4", { class: "drawn-title", text: "Drawn periods", hidden: true }),
    el("ul", { class: "periods" }),
  );
}

function updateGoods(entry) {
  const { goods: g, node } = entry;
  const p = g.period;
  node.querySelector(".title").textContent = g.title;
  node.querySelector(".price").textContent = `${money(g.share_price)} a share, ${g.total_shares} shares a period`;
  const progress = node.querySelector(".progress");
  progress.dataset.sold = p.sold;
  progress.dataset.total = g.total_shares;
  progress.dataset.period = p.number;
  const bar = progress.querySelector("progress");
  bar.max = g.total_shares;
  bar.value = p.sold;
  bar.setAttribute("aria-label", `Period ${p.number}: ${p.sold} of ${g.total_shares} shares sold`);
  progress.querySelector(".progress-text").textContent =
    p.status === "drawn"
      ? `Period ${p.number}: ${p.sold} / ${g.total_shares} sold, drawn; no more periods`
      : `Period ${p.number}: ${p.sold} / ${g.total_shares} sold`;
  node.querySelector(".commitment").textContent = `Commitment of period ${p.number}: ${p.commitment}`;
  node.querySelector("button.buy-shares").disabled = p.status === "drawn";
  renderCodes(entry);
}

function drawnNumbers(g) {
  const last = g.period.status === "drawn" ? g.period.number : g.period.number - 1;
  const list = [];
  for (let n = last; n >= 1 && list.length < DRAWN_SHOWN; n--) list.push(n);
  return list;
}

async function loadPeriods(entry) {
  for (const n of drawnNumbers(entry.goods)) {
    if (entry.periods.has(n)) continue;
    try {
      const { period } = await api(`/api/lottery/${encodeURIComponent(entry.goods.id)}/periods/${n}`);
      if (!period.draw) continue;
      entry.periods.set(n, period);
    } catch (e) {
      fail(`Could not load period ${n} of “${entry.goods.title}”`, e);
      return;
    }
  }
  renderPeriods(entry);
}

function renderPeriods(entry) {
  const ul = entry.node.querySelector(".periods");
  const wanted = drawnNumbers(entry.goods).filter((n) => entry.periods.has(n));
  entry.node.querySelector(".drawn-title").hidden = wanted.length === 0;
  const nodes = wanted.map((n) => {
    const existing = ul.querySelector(`[data-period="${n}"]`);
    return existing || periodNode(entry, entry.periods.get(n));
  });
  const shown = [...ul.children];
  if (nodes.length !== shown.length || nodes.some((n, i) => n !== shown[i])) ul.replaceChildren(...nodes);
  for (const node of nodes) markWin(entry, node);
}

function periodNode(entry, period) {
  const d = period.draw;
  const result = el("p", { class: "verify-result", "aria-live": "polite" });
  const verify = el("button", { type: "button", class: "verify", text: "Verify" });
  verify.addEventListener("click", async () => {
    verify.disabled = true;
    result.textContent = "Checking…";
    try {
      const { verifyDraw } = await import("./verify.js");
      const outcome = await verifyDraw(period);
      result.textContent = outcome.text;
      result.dataset.verified = String(outcome.ok);
    } catch (e) {
      result.textContent = `does not verify: ${e.message}`;
      result.dataset.verified = "false";
    } finally {
      verify.disabled = false;
    }
  });
  return el(
    "li",
    { class: "period", dataset: { period: String(period.number) } },
    el("h5", { text: `Period ${period.number}` }),
    el("p", {}, "Winner: ", el("span", { class: "winner", text: `${d.winner.nickname} (${d.winner.phone})` })),
    el("p", {}, "Winning code: ", el("span", { class: "winning-code", text: String(d.winning_code) })),
    el("p", { class: "you-won", hidden: true, text: "You won this period!" }),
    el("p", { class: "hint", text: `Drawn ${localTime(d.drawn_at)}, ${d.participants} participants` }),
    verify,
    result,
  );
}

function markWin(entry, node) {
  const n = Number(node.dataset.period);
  const period = entry.periods.get(n);
  const codes = myCodes.get(entry.goods.id)?.get(n) || [];
  node.querySelector(".you-won").hidden = !(period && codes.includes(period.draw.winning_code));
}

function renderCodes(entry) {
  const box = entry.node.querySelector(".my-codes");
  const byPeriod = myCodes.get(entry.goods.id);
  if (!session.token) {
    box.replaceChildren(el("p", { class: "hint", text: "Log in to see your codes." }));
    return;
  }
  if (!byPeriod || byPeriod.size === 0) {
    box.replaceChildren(el("p", { class: "hint", text: "No codes yet." }));
    return;
  }
  const periods = [...byPeriod.keys()].sort((a, b) => b - a);
  box.replaceChildren(
    ...periods.map((n) =>
      el("p", { class: "codes-of-period" }, `Period ${n}: `, el("span", { class: "codes", text: byPeriod.get(n).join(", ") })),
    ),
  );
  for (const node of entry.node.querySelectorAll(".periods [data-period]")) markWin(entry, node);
}

function renderAllCodes() {
  for (const entry of goods.values()) renderCodes(entry);
}

function renderGoods(list) {
  const ul = $("goods-list");
  const seen = new Set();
  for (const g of list) {
    seen.add(g.id);
    let entry = goods.get(g.id);
    if (!entry) {
      entry = { goods: g, node: goodsNode(g), periods: new Map() };
      goods.set(g.id, entry);
    }
    entry.goods = g;
    updateGoods(entry);
  }
  for (const [id, entry] of goods) {
    if (!seen.has(id)) {
      entry.node.remove();
      goods.delete(id);
    }
  }
  const order = list.map((g) => g.id);
  const shown = [...ul.children].map((n) => n.dataset.goodsId);
  if (order.join() !== shown.join()) ul.replaceChildren(...order.map((id) => goods.get(id).node));
  $("no-goods").hidden = list.length > 0;
}

const pollLottery = poll(
  async () => {
    try {
      const data = await api("/api/lottery");
      renderGoods(data.goods);
      for (const entry of goods.values()) await loadPeriods(entry);
    } catch (e) {
      fail("Could not load the lottery", e);
    }
  },
  LOTTERY_POLL_MS,
  () => current === "lottery",
);

async function loadMyCodes() {
  if (!session.token) {
    myCodes.clear();
    renderAllCodes();
    return;
  }
  try {
    const page = await api("/api/me/lottery", { token: session.token });
    myCodes.clear();
    for (const p of page.purchases) {
      if (!myCodes.has(p.goods_id)) myCodes.set(p.goods_id, new Map());
      const byPeriod = myCodes.get(p.goods_id);
      byPeriod.set(p.period, [...(byPeriod.get(p.period) || []), ...p.codes]);
    }
    renderAllCodes();
    if (page.next_cursor) say(message, "info", "Showing your most recent lottery codes only.");
  } catch (e) {
    fail("Could not load your lottery codes", e);
  }
}

async function buyShares(goodsId, input, button) {
  const entry = goods.get(goodsId);
  const title = entry?.goods.title || `goods ${goodsId}`;
  if (needLogin("buy shares")) return;
  const raw = input.value.trim();
  const count = /^\d+$/.test(raw) ? Number(raw) : raw;
  button.disabled = true;
  try {
    const { purchase } = await api(`/api/lottery/${encodeURIComponent(goodsId)}/shares`, {
      method: "POST",
      token: session.token,
      body: { count },
      headers: { "idempotency-key": crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}` },
    });
    let text = `Bought ${purchase.allocated} share${purchase.allocated === 1 ? "" : "s"} of “${title}”, period ${purchase.period}: codes ${purchase.codes.join(", ")}.`;
    if (purchase.allocated < purchase.requested) {
      text += ` Only ${purchase.allocated} of the ${purchase.requested} asked for were left.`;
    }
    if (purchase.period_sold_out) text += " The period sold out and has been drawn.";
    say(message, "ok", text);
  } catch (e) {
    fail(`Could not buy shares of “${title}”`, e);
  } finally {
    button.disabled = false;
    await pollLottery();
    await loadMyCodes();
  }
}

// ---- Start ----

setSession(session.token, session.user);
if (session.token) {
  api("/api/me", { token: session.token })
    .then(({ user }) => setSession(session.token, user))
    .catch((e) => {
      if (e instanceof ApiError && e.status === 401) setSession("", null);
    });
}
show(location.hash.slice(1));
