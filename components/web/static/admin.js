// The operator's page: the admin key (memory only), the two creation forms
// and a live view of sales. Hooks for browser tests are listed at the top
// of admin.html.

import { api, ApiError, el, money, poll, say } from "./api.js";

const SALES_POLL_MS = 3000;

const $ = (id) => document.getElementById(id);
const message = $("admin-message");

// Never stored: a reload forgets it.
let adminKey = "";

function setKey(key) {
  adminKey = key;
  const unlocked = Boolean(key);
  for (const form of [$("voucher-form"), $("goods-form")]) {
    form.querySelector("fieldset").disabled = !unlocked;
  }
  $("lock").hidden = !unlocked;
  $("admin-key").value = "";
  $("admin-key").placeholder = unlocked ? "unlocked: type a new key to replace it" : "";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("admin-key").value.trim();
  if (!key) {
    say(message, "error", "Type the admin key first.");
    $("admin-key").focus();
    return;
  }
  setKey(key);
  say(message, "ok", "Unlocked. The key stays in this page only and is checked when you create something.");
  $("v-title").focus();
});

$("lock").addEventListener("click", () => {
  setKey("");
  say(message, "info", "Locked: the key is forgotten.");
  $("admin-key").focus();
});

// The form's fields as the API's body: empty optional fields left out,
// whole numbers as numbers, anything else as typed (the API says what is
// wrong with it), local times as RFC 3339.
function body(form, optional) {
  const out = {};
  for (const field of form.querySelectorAll("input, textarea")) {
    const raw = field.value.trim();
    if (raw === "") {
      if (!optional.includes(field.name)) out[field.name] = "";
      continue;
    }
    if (field.type === "number") {
      out[field.name] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
    } else if (field.type === "datetime-local") {
      const t = new Date(raw);
      out[field.name] = Number.isNaN(t.getTime()) ? raw : t.toISOString();
    } else {
      out[field.name] = raw;
    }
  }
  return out;
}

// Submits a creation form; the API's answer (or refusal) shows next to the
// form and in the page's status area.
function creation(formId, path, optional, done) {
  const form = $(formId);
  const local = $(`${formId}-message`);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!adminKey) {
      say(local, "error", "Unlock with the admin key first.");
      say(message, "error", "Unlock with the admin key first.");
      $("admin-key").focus();
      return;
    }
    const sent = body(form, optional);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const text = done(await api(path, { method: "POST", token: adminKey, body: sent }), sent);
      say(local, "ok", text);
      say(message, "ok", text);
      refreshSales();
    } catch (e) {
      let text = e instanceof ApiError ? e.message : String(e.message);
      if (e instanceof ApiError && e.status === 401) text += ": the admin key is wrong; unlock again";
      if (e instanceof ApiError && e.code === "rate_limited" && e.retryAfter) {
        text += ` (wait ${e.retryAfter} s)`;
      }
      say(local, "error", `Not created: ${text}.`);
      say(message, "error", `Not created: ${text}.`);
      if (e instanceof ApiError && e.status === 401) setKey("");
    } finally {
      button.disabled = false;
    }
  });
}

creation("voucher-form", "/api/admin/vouchers", ["sub_title", "rules"], ({ voucher }) => {
  $("sales-shop").value = voucher.shop_id;
  return `Created voucher ${voucher.id}, “${voucher.title}”: ${voucher.stock} at ${money(voucher.pay_value)}.`;
});

creation("goods-form", "/api/admin/lottery", ["code_base", "max_periods"], ({ goods }) =>
  `Created lottery goods ${goods.id}, “${goods.title}”: ${goods.total_shares} shares a period, commitment ${goods.period.commitment}.`,
);

// Default times: the sale opens in a minute and runs an hour.
function localInput(t) {
  const d = new Date(t - new Date(t).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}
$("v-begin").value = localInput(Date.now() + 60000);
$("v-end").value = localInput(Date.now() + 3660000);

// ---- Live sales: the public catalogue, polled ----

function row(tbody, key, id, cells) {
  let tr = tbody.querySelector(`[data-${key}-id="${CSS.escape(id)}"]`);
  if (!tr) {
    tr = el("tr", { [`data-${key}-id`]: id }, ...cells.map(([cls]) => el("td", { class: cls })));
    tbody.append(tr);
  }
  for (const [cls, text, data] of cells) {
    const td = tr.querySelector(`.${cls}`);
    td.textContent = text;
    if (data) Object.assign(td.dataset, data);
  }
  return tr;
}

function prune(tbody, key, ids) {
  for (const tr of [...tbody.children]) {
    if (!ids.has(tr.getAttribute(`data-${key}-id`))) tr.remove();
  }
}

const refreshSales = poll(
  async () => {
    const shop = $("sales-shop").value.trim() || "1";
    try {
      const [{ vouchers }, { goods }] = await Promise.all([
        api(`/api/vouchers?shop_id=${encodeURIComponent(shop)}`),
        api("/api/lottery"),
      ]);
      const vt = $("sales-vouchers");
      for (const v of vouchers) {
        row(vt, "voucher", v.id, [
          ["name", `${v.id}: ${v.title}`],
          ["remaining", `${v.remaining} / ${v.stock}`, { remaining: v.remaining, stock: v.stock }],
          ["state", v.status.replace("_", " ")],
        ]);
      }
      prune(vt, "voucher", new Set(vouchers.map((v) => v.id)));
      const gt = $("sales-goods");
      for (const g of goods) {
        row(gt, "goods", g.id, [
          ["name", `${g.id}: ${g.title}`],
          ["period", `${g.period.number} (${g.period.status})`],
          ["progress", `${g.period.sold} / ${g.total_shares}`, { sold: g.period.sold, total: g.total_shares }],
        ]);
      }
      prune(gt, "goods", new Set(goods.map((g) => g.id)));
    } catch (e) {
      say(message, "error", `Could not load the sales: ${e.message}.`);
    }
  },
  SALES_POLL_MS,
  () => true,
);

$("sales-shop").addEventListener("change", () => {
  $("sales-vouchers").replaceChildren();
  refreshSales();
});

setKey("");
refreshSales();
