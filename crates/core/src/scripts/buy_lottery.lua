-- Buys up to `shares` shares of a goods' open period.
--
-- The shares are the index range [sold, sold + allocated) of the period,
-- taken at once, and their codes are the permuted indexes, so no code is
-- given twice and the period keeps no list of codes: memory per period is
-- one record per purchase. When the last share goes, the period is drawn
-- in this same script and the next one opened (unless max_periods is
-- reached).
--
--@ uses perm sha256
--> key info                 the goods: hash {total, base, max_periods, period,
--                               state, root, ...}
--> key idempotency          the stored answer for the request's idempotency
--                               key (never touched without one)
--> key purchases            the user's purchases of this goods: list of
--                               "period|pid|start|count|ms|pseudonym"
--> arg user_id str
--> arg buyer_key str        the buyer's key for this goods (64 hex digits);
--                               the public record names the buyer by the
--                               period's pseudonym made from it, not by
--                               the user id
--> arg shares int           shares requested (1..min(total, max_count))
--> arg purchase_id str
--> arg has_key flag         the request has an idempotency key
--> arg max_count int        the most shares one purchase may take
--> arg period_prefix str    the goods' period key without the number
--
--< outcome bought           (or the stored answer for a repeated
--                               idempotency key)
--< outcome not_found        no such goods
--< outcome closed           no open period left (sold out for good)
--< outcome bad_count        a count below 1 or above the limit
--< field purchase_id id
--< field period int
--< field allocated int
--< field sold_out flag      this purchase sold the period out
--< field created_ms int
--< field requested int
--< field limit int          for bad_count: the most shares a purchase may take
--< field commitment str     the period's commitment, published when it opened
--< field record str         the purchase's record, as hashed into the digest
--< field digest str         the period's digest after this purchase
--< rest codes               `allocated` codes
--
-- When a next period opens, its seed is made here from the goods' secret
-- root (period_seed in sha256.lua) and its commitment published: no seed
-- is ever an argument, so none shows in MONITOR or SLOWLOG.
--
-- Touches, in the same slot: the period hashes (period_prefix .. n: sold,
-- perm (the codes' key, see perm.lua), commitment, digest, opened, status,
-- and after the draw seed, winning_code, winner, winner_purchase, drawn,
-- participants), their purchases (.. PERIOD_PURCHASES_SUFFIX: sorted set
-- of "<record>|<digest after it>|<user id>" scored by start, so the draw
-- finds the winner's purchase in O(log n) and the public list pages
-- through them in chain order, lottery_purchases.lua, which never shows
-- the user id) and their buyers while selling (.. PERIOD_BUYERS_SUFFIX, a
-- set).
--
-- Each purchase extends the period's digest with its record
-- "pid|pseudonym|start|count|ms":
--   digest = sha1hex(digest .. '|' .. record)     (starting from '')
-- and the draw is
--   winning_code = base + 1 + (tonumber(first 12 hex digits of
--                  sha1hex(seed .. ':' .. digest), 16) mod total)

-- On the purchase path numbers are coerced with `+ 0` and written with
-- string.format, and strings read from Redis are reused as they are:
-- conversions between numbers and strings are a large part of a script's
-- cost (see gcra.lua).
local info = redis.call('HMGET', info_key, 'total', 'base', 'max_periods', 'period', 'state')
if not info[1] then
  return outcome_only(NOT_FOUND)
end
local total, base = info[1] + 0, info[2] + 0
local max_periods, period = info[3] + 0, info[4] + 0

-- `perm` is the period's perm key when the caller has read it already.
local function codes_of(period_no, start, count, perm)
  perm = perm or redis.call('HGET', period_prefix .. period_no, 'perm')
  local p = perm_new(perm, total)
  local codes = {}
  for i = 0, count - 1 do
    codes[#codes + 1] = base + 1 + perm_forward(p, start + i)
  end
  return codes
end

local function answer_of(period_no, pid, start, count, ms, sold_out, requested, perm,
                         commitment, record, digest)
  local reply = { BOUGHT, pid, period_no + 0, count, sold_out, ms, requested, 0,
    commitment, record, digest }
  for _, c in ipairs(codes_of(period_no, start, count, perm)) do
    reply[#reply + 1] = c
  end
  return reply
end

-- The reply stored for an idempotency key: the period, its record
-- "pid|pseudonym|start|count|ms" and the digest after it.
if has_key == '1' then
  local stored = redis.call('HMGET', idempotency_key, 'record', 'sold_out', 'requested', 'period', 'digest')
  if stored[1] then
    local pid, start, count, ms = string.match(stored[1], '^([^|]+)|[^|]*|([^|]+)|([^|]+)|([^|]+)$')
    local p = redis.call('HMGET', period_prefix .. stored[4], 'perm', 'commitment')
    return answer_of(stored[4], pid, start + 0, count + 0, ms + 0, tonumber(stored[2]),
      tonumber(stored[3]), p[1], p[2], stored[1], stored[5])
  end
end

local requested = shares + 0
local cap = math.min(total, tonumber(max_count))
if requested < 1 or requested > cap or requested ~= math.floor(requested) then
  return { BAD_COUNT, '', 0, 0, 0, 0, 0, cap, '', '', '' }
end
if info[5] ~= 'selling' then
  return { CLOSED, '', period, 0, 0, 0, 0, 0, '', '', '' }
end

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local pkey = period_prefix .. info[4]
-- One read and one write of the period hash (each redis.call costs).
local current = redis.call('HMGET', pkey, 'sold', 'digest', 'perm', 'commitment')
local sold, perm = current[1] + 0, current[3]
local allocated = math.min(requested, total - sold)
local start = sold
local tail = string.format('|%d|%d|%d', start, allocated, now_ms)
-- The buyer's pseudonym in this period (PseudonymKey::pseudonym): made
-- here because only here is the period known; one per period, so a
-- published winner's record ties together none of their other purchases.
local pseudonym = string.sub(redis.sha1hex(buyer_key .. ':' .. info[4]), 1, 16)
local record = purchase_id .. '|' .. pseudonym .. tail
local digest = redis.sha1hex(current[2] .. '|' .. record)
redis.call('HSET', pkey, 'sold', string.format('%d', sold + allocated), 'digest', digest)

redis.call('ZADD', pkey .. PERIOD_PURCHASES_SUFFIX, current[1], record .. '|' .. digest .. '|' .. user_id)
redis.call('SADD', pkey .. PERIOD_BUYERS_SUFFIX, user_id)
redis.call('RPUSH', purchases_key, info[4] .. '|' .. purchase_id .. tail .. '|' .. pseudonym)

local sold_out = 0
if sold + allocated == total then
  sold_out = 1
  -- The seed is made from the goods' root now, to be revealed with the draw.
  local root = redis.call('HGET', info_key, 'root')
  local seed = period_seed(root, period)
  local h = redis.sha1hex(seed .. ':' .. digest)
  local offset = tonumber(string.sub(h, 1, 12), 16) % total
  local winning_code = base + 1 + offset
  -- The winner holds the share whose permuted index is the offset.
  local index = perm_backward(perm_new(perm, total), offset)
  -- The purchase with the greatest first index not above `index` holds it.
  local holder = redis.call('ZREVRANGEBYSCORE', pkey .. PERIOD_PURCHASES_SUFFIX, index, '-inf', 'LIMIT', 0, 1)[1]
  local winner_purchase, winner = string.match(holder, '^([^|]+)|.*|([^|]+)$')
  redis.call('HSET', pkey, 'status', 'drawn', 'seed', seed, 'winning_code', winning_code,
    'winner', winner, 'winner_purchase', winner_purchase, 'drawn', now_ms,
    'participants', redis.call('SCARD', pkey .. PERIOD_BUYERS_SUFFIX))
  redis.call('DEL', pkey .. PERIOD_BUYERS_SUFFIX)
  if max_periods == 0 or period < max_periods then
    local next_seed = period_seed(root, period + 1)
    redis.call('HSET', period_prefix .. (period + 1), 'sold', 0, 'perm', perm_key(next_seed),
      'commitment', sha256_hex(next_seed), 'digest', '', 'opened', now_ms, 'status', 'selling')
    redis.call('HSET', info_key, 'period', period + 1)
  else
    redis.call('HSET', info_key, 'state', 'closed')
  end
end

if has_key == '1' then
  redis.call('HSET', idempotency_key, 'record', record, 'sold_out', sold_out, 'requested', shares,
    'period', info[4], 'digest', digest)
  redis.call('PEXPIRE', idempotency_key, 86400000)
end
return answer_of(info[4], purchase_id, start, allocated, now_ms, sold_out, requested, perm,
  current[4], record, digest)
