-- Buys one voucher for a user: checks the sale window against Redis's
-- clock, one active order per user and the stock, then takes one from the
-- stock and records the order, unpaid until its pay deadline, all at once,
-- so the stock never goes below zero and no user holds two active orders.
-- First it puts back on sale the units of orders whose deadline has passed
-- (at most reclaim_limit of them; see orders.lua). Every order it creates
-- or expires goes to the outbox when export is on (orders.lua); a refusal
-- writes nothing.
--
--@ uses orders
--@ replayable a replay finds the order it placed, by its id, and
--     answers it as bought again
--> key info                 the voucher: hash {begin, end (ms), remaining,
--                               pay_value, next_deadline, ...}
--> key buyers               the voucher's active orders by user
--> key unpaid               its unpaid orders by deadline
--> key outbox               its order outbox, a stream; not touched with
--                               export off
--> key export_wake          the flag of a pending wake-up of the exporter
--> arg user_id int          the buyer
--> arg order_id int         the new order's id
--> arg pay_ms int           how long the buyer has to pay
--> arg order_prefix str     the key of an order of this voucher, without the id
--> arg reclaim_limit int    the most expired orders to put back on sale
--> arg part_ref str        the voucher's part, as a wake-up of the exporter names
--                               it (the voucher id when it is not split)
--> arg export flag          append each change of an order to the outbox
--> arg parts str            the parts the caller believes the voucher has;
--                               a purchase only runs in the buyer's home part
--
--< outcome bought           the order was placed
--< outcome not_found        no such voucher
--< outcome not_started      the sale has not begun
--< outcome ended            the sale is over
--< outcome sold_out         no stock left in this part
--< outcome wrong_parts      the voucher has another number of parts: detail
--                               says how many, and nothing was done
--< outcome already_bought   the user holds an active order for it (one
--                               with another id: a replay of the purchase
--                               that placed it is answered `bought`)
--< field detail int         wrong_parts: the voucher's parts; sold_out: 1 when
--                               the other parts should be searched for a unit
--                               (the part has not found them all empty in the
--                               last second), else 0; 0 otherwise
--< rest order               the order placed or held already, as
--                               orders_append writes it; nothing for the
--                               other outcomes

-- On the purchase path numbers are coerced with `+ 0` and written with
-- string.format rather than with tonumber and by joining them into strings:
-- both are far cheaper in Redis's Lua.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)

local info = redis.call('HMGET', info_key, 'begin', 'end', 'remaining', 'pay_value', 'next_deadline',
  'parts', 'drained_until')
if not info[1] then
  return { NOT_FOUND, 0 }
end
if (info[6] or '1') ~= parts then
  return { WRONG_PARTS, (info[6] or 1) + 0 }
end
-- Checked here before calling: a refusal when nothing is due pays no call.
-- The outbox (orders.lua) too is made only once an order changes.
local back, next_deadline, outbox = 0, info[5], false
if next_deadline and now_ms >= next_deadline + 0 then
  outbox = { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
    on = export == '1' }
  back, next_deadline = orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix,
    next_deadline, now_ms, reclaim_limit, outbox)
end

local existing = redis.call('HGET', buyers_key, user_id)
if existing then
  local sep = string.find(existing, ':', 1, true)
  local oid = sep and string.sub(existing, 1, sep - 1) or existing
  local reply = orders_append({ ALREADY_BOUGHT, 0 }, order_prefix, oid, now_ms)
  if not reply then
    -- An order from before orders had a record of their own.
    return { ALREADY_BOUGHT, 0, oid, user_id, 'unpaid', info[4], '',
      sep and string.sub(existing, sep + 1) or '', '', '', '', '', '' }
  end
  -- The order's fields start at the third element: status is the fifth,
  -- the deadline the ninth.
  if reply[5] ~= 'expired' then
    if oid == order_id then
      -- This very purchase, run again (a replay): answered as it was.
      reply[1] = BOUGHT
    end
    return reply
  end
  -- Due, but beyond what the reclaim above could take: expire it now, and
  -- the buyer may buy again.
  outbox = outbox or { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
    on = export == '1' }
  orders_expire(info_key, buyers_key, unpaid_key, order_prefix, oid, user_id, reply[9], outbox)
  next_deadline = orders_next_deadline(info_key, unpaid_key)
  back = back + 1
end

if now_ms < info[1] + 0 then
  return { NOT_STARTED, 0 }
end
if now_ms >= info[2] + 0 then
  return { ENDED, 0 }
end
if info[3] + back <= 0 then
  return { SOLD_OUT, (parts ~= '1' and now_ms >= (info[7] or 0) + 0) and 1 or 0 }
end

local created = string.format('%d', now_ms)
local deadline = string.format('%d', now_ms + pay_ms)
if next_deadline and now_ms + pay_ms >= next_deadline + 0 then
  redis.call('HINCRBY', info_key, 'remaining', -1)
else
  redis.call('HSET', info_key, 'remaining', string.format('%d', info[3] + back - 1),
    'next_deadline', deadline)
end
redis.call('HSET', buyers_key, user_id, order_id .. ':' .. created)
redis.call('HSET', order_prefix .. order_id, 'user_id', user_id, 'status', 'unpaid',
  'amount', info[4], 'created', created, 'deadline', deadline, 'updated', created, 'version', '1')
redis.call('ZADD', unpaid_key, deadline, order_id .. ':' .. user_id)
local reply = { BOUGHT, 0, order_id, user_id, 'unpaid', info[4], '', created, deadline, '', '', '',
  created }
-- The reply has the new order's fields from its fourth element: nothing to
-- read back.
if export == '1' then
  orders_changed(outbox or { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
    on = true }, order_prefix, order_id, reply, 4)
end
return reply
