// Checks a lottery draw in the browser, with Web Crypto, from what the API
// publishes (docs/LOTTERY.md, "Checking a draw by hand"):
//
//   commitment   = sha256_hex(seed), as published when the period opened
//   h            = sha1_hex(seed + ":" + purchases_digest)
//   winning_code = code_base + 1 + (int(first 12 hex digits of h) mod total_shares)
//
// and, where the app publishes the period's purchase records
// (GET /api/lottery/{goods_id}/periods/{n}/purchases, pages of
// {"record", "digest", "codes_from", "count"} and `next_cursor`), that the
// chain digest_k = sha1_hex(digest_(k-1) + "|" + record_k), digest_0 = "",
// ends in purchases_digest.
//
// verifyDraw(period) gives {ok, text}: text starts with "verified" or with
// "does not verify" and says what did not match.

import { api, ApiError } from "./api.js";

const encoder = new TextEncoder();

async function hex(algorithm, text) {
  const bytes = new Uint8Array(await crypto.subtle.digest(algorithm, encoder.encode(text)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const sha1Hex = (text) => hex("SHA-1", text);
export const sha256Hex = (text) => hex("SHA-256", text);

// The winning code the formula gives (exact: 12 hex digits are 48 bits).
export async function winningCode(seed, digest, codeBase, totalShares) {
  const h = await sha1Hex(`${seed}:${digest}`);
  return Number(codeBase) + 1 + (Number.parseInt(h.slice(0, 12), 16) % Number(totalShares));
}

// The digest chain over the records, checking each published digest and
// that the records' share ranges follow one another from index 0.
export async function chain(records) {
  let digest = "";
  let next = 0;
  const problems = [];
  for (const [k, item] of records.entries()) {
    digest = await sha1Hex(`${digest}|${item.record}`);
    if (item.digest !== undefined && item.digest !== digest) {
      problems.push(`record ${k + 1} hashes to ${digest}, not the published ${item.digest}`);
      break;
    }
    const fields = String(item.record).split("|");
    const first = Number(fields[2]);
    const shares = Number(fields[3]);
    if (fields.length !== 5 || first !== next || (item.count !== undefined && shares !== Number(item.count))) {
      problems.push(`record ${k + 1} (${item.record}) does not follow the shares before it`);
      break;
    }
    next = first + shares;
  }
  return { digest, shares: next, problems };
}

// Every page of the period's purchase records, or null when the app does
// not publish them (404). A rate-limited page is retried after its wait.
async function purchases(goodsId, number) {
  const base = `/api/lottery/${encodeURIComponent(goodsId)}/periods/${number}/purchases`;
  const records = [];
  let cursor = null;
  for (let pages = 0; pages < 100000; pages++) {
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    let page;
    for (let attempt = 0; ; attempt++) {
      try {
        page = await api(base + query);
        break;
      } catch (e) {
        if (e instanceof ApiError && e.status === 404 && pages === 0) return null;
        if (e instanceof ApiError && e.code === "rate_limited" && attempt < 5) {
          await new Promise((r) => setTimeout(r, Math.max(1, e.retryAfter) * 1000));
          continue;
        }
        throw e;
      }
    }
    const items = page.purchases || page.items || page.records || Object.values(page).find(Array.isArray) || [];
    records.push(...items);
    cursor = page.next_cursor || null;
    if (!cursor || items.length === 0) break;
  }
  return records;
}

export async function verifyDraw(period) {
  if (!globalThis.crypto || !crypto.subtle) {
    return { ok: false, text: "does not verify: this browser offers no Web Crypto here (it needs HTTPS or localhost)" };
  }
  const draw = period.draw;
  if (!draw || !draw.calculation) return { ok: false, text: "does not verify: the period has no draw yet" };
  const c = draw.calculation;
  const problems = [];

  const commitment = await sha256Hex(c.seed);
  if (commitment !== c.commitment) {
    problems.push(`sha256(seed) is ${commitment}, not the calculation's commitment ${c.commitment}`);
  }
  if (period.commitment && commitment !== period.commitment) {
    problems.push(`sha256(seed) is ${commitment}, not the period's published commitment ${period.commitment}`);
  }
  const code = await winningCode(c.seed, c.purchases_digest, c.code_base, c.total_shares);
  if (code !== Number(draw.winning_code)) {
    problems.push(`the formula gives winning code ${code}, not ${draw.winning_code}`);
  }

  let chained = "";
  const records = await purchases(period.goods_id, period.number);
  if (records === null) {
    chained = " (the purchase records are not published, so the digest chain was not checked)";
  } else {
    const walked = await chain(records);
    problems.push(...walked.problems);
    if (walked.problems.length === 0 && walked.digest !== c.purchases_digest) {
      problems.push(`the ${records.length} purchase records chain to ${walked.digest}, not purchases_digest ${c.purchases_digest}`);
    }
    if (walked.problems.length === 0 && walked.shares !== Number(c.total_shares)) {
      problems.push(`the purchase records cover ${walked.shares} shares, not ${c.total_shares}`);
    }
    chained = ` and the chain of ${records.length} purchase records`;
  }

  if (problems.length > 0) return { ok: false, text: `does not verify: ${problems.join("; ")}` };
  return {
    ok: true,
    text: `verified: the seed matches the commitment, the winning code ${code} follows from it${chained}`,
  };
}
