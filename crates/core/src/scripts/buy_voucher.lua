-- Buys one voucher for a user: checks the sale window against Redis's
-- clock, one order per user and the stock, then takes one from the stock
-- and records the order, all at once, so the stock never goes below zero
-- and no user gets two orders.
--
--> key info         the voucher: hash {begin, end (ms), remaining, ...}
--> key buyers       the voucher's buyers: hash user id -> "<order id>:<created ms>"
--> arg user_id int  the buyer
--> arg order_id int the new order's id
--
--< outcome bought          the order was placed
--< outcome not_found       no such voucher
--< outcome not_started     the sale has not begun
--< outcome ended           the sale is over
--< outcome sold_out        no stock left
--< outcome already_bought  the user holds an order for it already
--< field order_id id       the order placed, or the one held already
--< field created_ms int    when that order was placed

-- On the purchase path numbers are coerced with `+ 0` and written with
-- string.format rather than with tonumber and by joining them into strings:
-- both are far cheaper in Redis's Lua.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)

local info = redis.call('HMGET', info_key, 'begin', 'end', 'remaining')
if not info[1] then
  return outcome_only(NOT_FOUND)
end

local existing = redis.call('HGET', buyers_key, user_id)
if existing then
  local sep = string.find(existing, ':', 1, true)
  return { ALREADY_BOUGHT, string.sub(existing, 1, sep - 1), tonumber(string.sub(existing, sep + 1)) }
end

if now_ms < info[1] + 0 then
  return outcome_only(NOT_STARTED)
end
if now_ms >= info[2] + 0 then
  return outcome_only(ENDED)
end
if info[3] + 0 <= 0 then
  return outcome_only(SOLD_OUT)
end

redis.call('HINCRBY', info_key, 'remaining', '-1')
redis.call('HSET', buyers_key, user_id, order_id .. ':' .. string.format('%d', now_ms))
return { BOUGHT, order_id, now_ms }
