-- Buys up to `count` shares of a goods' open period; perm.lua and
-- sha256.lua are prepended.
--
-- The shares are the index range [sold, sold + allocated) of the period,
-- taken at once, and their codes are the permuted indexes, so no code is
-- given twice and the period keeps no list of codes: memory per period is
-- one record per purchase. When the last share goes, the period is drawn
-- in this same script and the next one opened (unless max_periods is
-- reached).
--
-- KEYS[1]  {g:<id>}:info   hash {total, base, max_periods, period, state, ...}
-- KEYS[2]  {g:<id>}:idem:<user>:<key>  the stored answer for an idempotency
--          key ('{g:<id>}:idem:-' when the request has none)
-- ARGV[1]  user id
-- ARGV[2]  shares requested (1..min(total, ARGV[5]))
-- ARGV[3]  purchase id
-- ARGV[4]  1 when the request has an idempotency key
-- ARGV[5]  the most shares one purchase may take
--
-- When a next period opens, its seed is made here from the goods' secret
-- root (period_seed in sha256.lua) and its commitment published: no seed
-- is ever an argument, so none shows in MONITOR or SLOWLOG.
--
-- Touches, in the same slot: {g:<id>}:p:<n> (the period hash: sold, perm
-- (the codes' key, see perm.lua), commitment, digest, opened, status, and
-- after the draw seed, winning_code, winner, winner_purchase, drawn,
-- participants), {g:<id>}:p:<n>:purchases
-- (sorted set of "pid|uid|start|count|ms" scored by start, so the draw
-- finds the winner's purchase in O(log n)), {g:<id>}:p:<n>:users
-- (set of buyers) and {g:<id>}:u:<user> (list of "period|pid|start|count|ms").
--
-- Each purchase extends the period's digest:
--   digest = sha1hex(digest .. '|' .. record)     (starting from '')
-- and the draw is
--   winning_code = base + 1 + (tonumber(first 12 hex digits of
--                  sha1hex(seed .. ':' .. digest), 16) mod total)
--
-- Reply: {outcome, purchase_id, period, allocated, sold_out (1|0), created_ms,
--         requested, codes...}
--   1 bought (or the stored answer for a repeated idempotency key)
--   2 no such goods     3 no open period left (sold out for good)
--   4 a count below 1 or above the limit (the limit is in `period`)

-- On the purchase path numbers are coerced with `+ 0` and written with
-- string.format, and strings read from Redis are reused as they are:
-- conversions between numbers and strings are a large part of a script's
-- cost (see gcra.lua).
local info = redis.call('HMGET', KEYS[1], 'total', 'base', 'max_periods', 'period', 'state')
if not info[1] then
  return { 2, '', 0, 0, 0, 0, 0 }
end
local total, base = info[1] + 0, info[2] + 0
local max_periods, period = info[3] + 0, info[4] + 0
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #'info')

-- `perm` is the period's perm key when the caller has read it already.
local function codes_of(period_no, start, count, perm)
  perm = perm or redis.call('HGET', prefix .. 'p:' .. period_no, 'perm')
  local p = perm_new(perm, total)
  local codes = {}
  for i = 0, count - 1 do
    codes[#codes + 1] = base + 1 + perm_forward(p, start + i)
  end
  return codes
end

local function answer_of(period_no, pid, start, count, ms, sold_out, requested, perm)
  local reply = { 1, pid, period_no + 0, count, sold_out, ms, requested }
  for _, c in ipairs(codes_of(period_no, start, count, perm)) do
    reply[#reply + 1] = c
  end
  return reply
end

-- The reply for a stored record "period|pid|start|count|ms".
local function answer(record, sold_out, requested)
  local f = {}
  for part in string.gmatch(record, '[^|]+') do f[#f + 1] = part end
  return answer_of(f[1], f[2], f[3] + 0, f[4] + 0, f[5] + 0, sold_out, requested, nil)
end

if ARGV[4] == '1' then
  local stored = redis.call('HMGET', KEYS[2], 'record', 'sold_out', 'requested')
  if stored[1] then
    return answer(stored[1], tonumber(stored[2]), tonumber(stored[3]))
  end
end

local requested = ARGV[2] + 0
local cap = math.min(total, tonumber(ARGV[5]))
if requested < 1 or requested > cap or requested ~= math.floor(requested) then
  return { 4, '', cap, 0, 0, 0, 0 }
end
if info[5] ~= 'selling' then
  return { 3, '', period, 0, 0, 0, 0 }
end

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local pkey = prefix .. 'p:' .. info[4]
-- One read and one write of the period hash (each redis.call costs).
local current = redis.call('HMGET', pkey, 'sold', 'digest', 'perm')
local sold, perm = current[1] + 0, current[3]
local allocated = math.min(requested, total - sold)
local start = sold
local tail = string.format('|%d|%d|%d', start, allocated, now_ms)
local record = ARGV[3] .. '|' .. ARGV[1] .. tail
local digest = redis.sha1hex(current[2] .. '|' .. record)
redis.call('HSET', pkey, 'sold', string.format('%d', sold + allocated), 'digest', digest)

redis.call('ZADD', pkey .. ':purchases', current[1], record)
redis.call('SADD', pkey .. ':users', ARGV[1])
local mine = info[4] .. '|' .. ARGV[3] .. tail
redis.call('RPUSH', prefix .. 'u:' .. ARGV[1], mine)

local sold_out = 0
if sold + allocated == total then
  sold_out = 1
  -- The seed is made from the goods' root now, to be revealed with the draw.
  local root = redis.call('HGET', KEYS[1], 'root')
  local seed = period_seed(root, period)
  local h = redis.sha1hex(seed .. ':' .. digest)
  local offset = tonumber(string.sub(h, 1, 12), 16) % total
  local winning_code = base + 1 + offset
  -- The winner holds the share whose permuted index is the offset.
  local index = perm_backward(perm_new(perm, total), offset)
  -- The purchase with the greatest first index not above `index` holds it.
  local holder = redis.call('ZREVRANGEBYSCORE', pkey .. ':purchases', index, '-inf', 'LIMIT', 0, 1)[1]
  local winner_purchase, winner = string.match(holder, '([^|]+)|([^|]+)|')
  redis.call('HSET', pkey, 'status', 'drawn', 'seed', seed, 'winning_code', winning_code,
    'winner', winner, 'winner_purchase', winner_purchase, 'drawn', now_ms,
    'participants', redis.call('SCARD', pkey .. ':users'))
  redis.call('DEL', pkey .. ':users')
  if max_periods == 0 or period < max_periods then
    local next_seed = period_seed(root, period + 1)
    redis.call('HSET', prefix .. 'p:' .. (period + 1), 'sold', 0, 'perm', perm_key(next_seed),
      'commitment', sha256_hex(next_seed), 'digest', '', 'opened', now_ms, 'status', 'selling')
    redis.call('HSET', KEYS[1], 'period', period + 1)
  else
    redis.call('HSET', KEYS[1], 'state', 'closed')
  end
end

if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], 'record', mine, 'sold_out', sold_out, 'requested', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], 86400000)
end
return answer_of(info[4], ARGV[3], start, allocated, now_ms, sold_out, requested, perm)
