-- One page of a user's purchases of one goods, newest first, with their
-- codes. The work is bounded by the arguments, however many purchases the
-- user has made.
--
--@ uses perm
--@ replayable it only reads
--> key info                 the goods
--> key purchases            the user's purchases of the goods: list of
--                               "period|pid|start|count|ms|pseudonym", oldest
--                               first
--> arg period int           only this period, or 0 for all
--> arg from_index int       read records before this index (exclusive);
--                               -1: from the newest
--> arg from_skip int        codes of the record at `from_index - 1` already
--                               returned by an earlier page (a purchase whose
--                               codes did not fit); else 0
--> arg purchase_limit int   at most this many purchases
--> arg code_limit int       at most this many codes
--> arg record_limit int     at most this many records looked at
--> arg period_prefix str    the goods' period key without the number
--
--< field next_before int    where the next page starts (its from_index, with
--                               next_skip as its from_skip); 0 when no older
--                               record is left
--< field next_skip int
--< field count int          purchases in this page
--< rest purchases           for each: purchase_id, period, created_ms,
--                               pseudonym (the buyer's, as in the period's
--                               public record), n, then n codes. A purchase whose codes do not
--                               all fit is cut, and the next page goes on with
--                               the rest under the same purchase id.

local info = redis.call('HMGET', info_key, 'total', 'base')
if not info[1] then
  return { 0, 0, 0 }
end
local total, base = tonumber(info[1]), tonumber(info[2])
local only = tonumber(period)
local len = redis.call('LLEN', purchases_key)
local before = tonumber(from_index)
if before < 0 or before > len then
  before = len
end
local skip = math.max(0, tonumber(from_skip))
local codes_left = tonumber(code_limit)
local max_purchases = tonumber(purchase_limit)
local low = math.max(0, before - tonumber(record_limit))
if before == 0 then
  return { 0, 0, 0 }
end

local records = redis.call('LRANGE', purchases_key, low, before - 1)
local perms = {}
local reply = { low, 0, 0 }
for i = #records, 1, -1 do
  local index = low + i - 1
  local period_no, pid, start, count, ms, pseudonym =
    string.match(records[i], '([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|?([^|]*)')
  period_no, start, count = tonumber(period_no), tonumber(start), tonumber(count)
  if only == 0 or only == period_no then
    -- A cursor is the client's to send: never skip more than the purchase.
    local from = (index == before - 1) and math.min(skip, count) or 0
    if reply[3] == max_purchases or codes_left == 0 then
      reply[1], reply[2] = index + 1, from
      break
    end
    if not perms[period_no] then
      perms[period_no] = perm_new(redis.call('HGET', period_prefix .. period_no, 'perm'), total)
    end
    local n = math.min(count - from, codes_left)
    reply[3] = reply[3] + 1
    reply[#reply + 1] = pid
    reply[#reply + 1] = period_no
    reply[#reply + 1] = tonumber(ms)
    reply[#reply + 1] = pseudonym
    reply[#reply + 1] = n
    for k = start + from, start + from + n - 1 do
      reply[#reply + 1] = base + 1 + perm_forward(perms[period_no], k)
    end
    codes_left = codes_left - n
    if from + n < count then
      reply[1], reply[2] = index + 1, from + n
      break
    end
  end
end
return reply
