-- Notes that a part of a split voucher found every other part empty: for
-- `for_ms` its buyers are refused as sold out without searching again
-- (buy_voucher.lua), so a sold-out voucher's refusals stay one round trip.
-- A unit that comes back to another part in that time (a cancelled or
-- expired order) waits that long for this part's buyers.
--
--@ replayable it only sets a time
--> key info                 the part's record
--> arg for_ms int
--
--< field set flag           the part exists

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('EXISTS', info_key) == 0 then
  return { 0 }
end
redis.call('HSET', info_key, 'drained_until', string.format('%d', now_ms + for_ms))
return { 1 }
