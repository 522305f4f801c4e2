-- One page of a user's purchases of one goods, newest first, with their
-- codes; perm.lua is prepended. The work is bounded by the arguments: at
-- most ARGV[6] records read and ARGV[5] codes computed, however many
-- purchases the user has made.
--
-- KEYS[1]  {g:<id>}:info
-- KEYS[2]  {g:<id>}:u:<user>   list of "period|pid|start|count|ms", oldest first
-- ARGV[1]  only this period, or 0 for all
-- ARGV[2]  read records before this index (exclusive); -1: from the newest
-- ARGV[3]  codes of the record at ARGV[2] - 1 already returned by an
--          earlier page (a purchase whose codes did not fit); else 0
-- ARGV[4]  at most this many purchases
-- ARGV[5]  at most this many codes
-- ARGV[6]  at most this many records looked at
--
-- Reply: {next_before, next_skip, purchases, then for each: purchase_id,
--         period, created_ms, n, then n codes}. next_before is where the
--         next page starts (ARGV[2] and ARGV[3] of the next call, with
--         next_skip); 0 when no older record is left. A purchase whose
--         codes do not all fit is cut, and the next page goes on with the
--         rest under the same purchase id.

local info = redis.call('HMGET', KEYS[1], 'total', 'base')
if not info[1] then
  return { 0, 0, 0 }
end
local total, base = tonumber(info[1]), tonumber(info[2])
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #'info')
local only = tonumber(ARGV[1])
local len = redis.call('LLEN', KEYS[2])
local before = tonumber(ARGV[2])
if before < 0 or before > len then
  before = len
end
local skip = math.max(0, tonumber(ARGV[3]))
local max_purchases, codes_left = tonumber(ARGV[4]), tonumber(ARGV[5])
local low = math.max(0, before - tonumber(ARGV[6]))
if before == 0 then
  return { 0, 0, 0 }
end

local records = redis.call('LRANGE', KEYS[2], low, before - 1)
local perms = {}
local reply = { low, 0, 0 }
for i = #records, 1, -1 do
  local index = low + i - 1
  local period, pid, start, count, ms = string.match(records[i], '([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)')
  period, start, count = tonumber(period), tonumber(start), tonumber(count)
  if only == 0 or only == period then
    -- A cursor is the client's to send: never skip more than the purchase.
    local from = (index == before - 1) and math.min(skip, count) or 0
    if reply[3] == max_purchases or codes_left == 0 then
      reply[1], reply[2] = index + 1, from
      break
    end
    if not perms[period] then
      perms[period] = perm_new(redis.call('HGET', prefix .. 'p:' .. period, 'perm'), total)
    end
    local n = math.min(count - from, codes_left)
    reply[3] = reply[3] + 1
    reply[#reply + 1] = pid
    reply[#reply + 1] = period
    reply[#reply + 1] = tonumber(ms)
    reply[#reply + 1] = n
    for k = start + from, start + from + n - 1 do
      reply[#reply + 1] = base + 1 + perm_forward(perms[period], k)
    end
    codes_left = codes_left - n
    if from + n < count then
      reply[1], reply[2] = index + 1, from + n
      break
    end
  end
end
return reply
