// The API as both pages speak to it: same origin, JSON, a bearer token or
// the admin key, and every refusal as an ApiError carrying the API's
// `code` and `message` (and `retry-after`, in seconds, when given).
// Also the few DOM helpers the pages share. No markup is ever parsed from
// a string: every text from the API goes in as text.

export class ApiError extends Error {
  constructor(status, code, message, body, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

// Server time minus this machine's time, from the `date` header of the
// last answer: countdowns follow the server's clock, not a skewed phone's.
let clockOffset = 0;

export function now() {
  return Date.now() + clockOffset;
}

export async function api(path, { method = "GET", token, body, headers } = {}) {
  const sent = { accept: "application/json", ...headers };
  if (token) sent.authorization = `Bearer ${token}`;
  const init = { method, headers: sent, cache: "no-store" };
  if (body !== undefined) {
    sent["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `the server cannot be reached (${e.message})`, null, 0);
  }
  const date = Date.parse(res.headers.get("date") || "");
  if (!Number.isNaN(date)) clockOffset = date + 500 - Date.now();
  let data = null;
  if (res.status !== 204) {
    try {
      data = await res.json();
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const error = (data && data.error) || {};
    const retry = Number.parseInt(res.headers.get("retry-after") || "", 10);
    throw new ApiError(
      res.status,
      error.code || `http_${res.status}`,
      error.message || `the server answered ${res.status}`,
      data,
      Number.isFinite(retry) ? retry : 0,
    );
  }
  return data;
}

// `el("li", {class: "x", dataset: {id: 1}}, "text", child)`.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child);
  }
  return node;
}

// Writes `parts` (text or nodes) into a status area; `kind` is "ok",
// "error" or "info" (a class, and `data-kind` for tests).
export function say(area, kind, ...parts) {
  area.replaceChildren(...parts);
  area.className = `status ${kind}`;
  area.dataset.kind = kind;
}

export function money(cents) {
  const n = Number(cents);
  if (!Number.isFinite(n)) return String(cents);
  return `¥${(n / 100).toFixed(2)}`;
}

// "1d 02:03:04" / "02:03:04" for a duration in milliseconds.
export function duration(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const pad = (n) => String(n).padStart(2, "0");
  const hms = `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
  return d > 0 ? `${d}d ${hms}` : hms;
}

export function localTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso || "";
  return new Date(t).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "medium",
  });
}

// Calls `fn` now and then every `ms` while `active()` holds and the page is
// visible; one call at a time.
export function poll(fn, ms, active) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden || !active()) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
    }
  };
  document.addEventListener("visibilitychange", tick);
  setInterval(tick, ms);
  return tick;
}
