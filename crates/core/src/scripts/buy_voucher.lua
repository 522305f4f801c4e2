-- Buys one voucher for a user: checks the sale window against Redis's
-- clock, one order per user and the stock, then takes one from the stock
-- and records the order, all at once, so the stock never goes below zero
-- and no user gets two orders.
--
-- KEYS[1]  {v:<id>}:info     hash {begin, end (ms), remaining, ...}
-- KEYS[2]  {v:<id>}:buyers   hash user id -> "<order id>:<created ms>"
-- ARGV[1]  user id
-- ARGV[2]  the new order's id
--
-- Reply: {outcome, order_id, created_ms}
--   1 bought            2 no such voucher    3 sale not started
--   4 sale ended        5 sold out           6 already bought (the
--   existing order's id and time are returned)

-- On the purchase path numbers are coerced with `+ 0` and written with
-- string.format rather than with tonumber and by joining them into strings:
-- both are far cheaper in Redis's Lua.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)

local info = redis.call('HMGET', KEYS[1], 'begin', 'end', 'remaining')
if not info[1] then
  return { 2, '', 0 }
end

local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  local sep = string.find(existing, ':', 1, true)
  return { 6, string.sub(existing, 1, sep - 1), tonumber(string.sub(existing, sep + 1)) }
end

if now_ms < info[1] + 0 then
  return { 3, '', 0 }
end
if now_ms >= info[2] + 0 then
  return { 4, '', 0 }
end
if info[3] + 0 <= 0 then
  return { 5, '', 0 }
end

redis.call('HINCRBY', KEYS[1], 'remaining', '-1')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. string.format('%d', now_ms))
return { 1, ARGV[2], now_ms }
