-- Reads or changes one voucher order, each change one step of its life:
--
--   unpaid --pay--> paid --use--> used
--     |               +--refund--> refunded
--     +--cancel (by the owner)--> cancelled     (the unit back on sale)
--     +--the pay deadline passes--> expired     (the unit back on sale)
--
-- Orders whose deadline has passed are expired first (see orders.lua), so
-- a payment that comes too late finds the order expired. A change from the
-- wrong state changes nothing. A webhook event is answered once: its
-- outcome is kept under its id for event_ttl_ms, and a repeat gets the same
-- outcome and the order as it is, without changing anything. Each change
-- it makes, expiry included, goes to the outbox when export is on
-- (orders.lua); a refusal or a read writes nothing.
--
--@ uses orders
--> key info                 the order's voucher
--> key buyers               the voucher's active orders by user
--> key unpaid               its unpaid orders by deadline
--> key event                the outcome of webhook event `event_id`; not
--                               touched without one
--> key outbox               the voucher's order outbox, a stream; not
--                               touched with export off
--> key export_wake          the flag of a pending wake-up of the exporter
--> arg order_id str
--> arg action str           read | cancel | pay | refund | use
--> arg owner str            for read and cancel, the user who must own the
--                               order; '' for anyone
--> arg amount int           for pay: the amount paid, cents
--> arg pay_type str         for pay: alipay | wechat | card
--> arg has_event flag       the request is a webhook event (key event)
--> arg event_ttl_ms int     how long an event's outcome is kept
--> arg order_prefix str     the key of an order of this voucher, without the id
--> arg reclaim_limit int    the most expired orders to put back on sale
--> arg voucher_id int       the voucher, as a wake-up of the exporter names it
--> arg export flag          append each change of an order to the outbox
--
--< outcome done             read, or changed as asked
--< outcome not_found        no such order (or not the owner's)
--< outcome invalid_state    the order's status does not allow the change
--< outcome amount_mismatch  the payment's amount is not the order's
--< outcome bad_action       an action this script does not know
--< field replayed flag      the answer to an event seen before
--< rest order               the order as it now is (orders_append);
--                               nothing when not found

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local now_text = string.format('%d', now_ms)

local outbox = { stream = outbox_key, wake = export_wake_key, voucher = voucher_id,
  on = export == '1' }
local next_deadline = redis.call('HGET', info_key, 'next_deadline')
orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix, next_deadline, now_ms, reclaim_limit,
  outbox)

if has_event == '1' then
  local seen = redis.call('GET', event_key)
  if seen then
    return orders_append({ seen + 0, 1 }, order_prefix, order_id, now_ms) or outcome_only(NOT_FOUND)
  end
end

local order_key = order_prefix .. order_id
local o = redis.call('HMGET', order_key, 'status', 'user_id', 'amount', 'deadline')
if not o[1] or (owner ~= '' and o[2] ~= owner) then
  return outcome_only(NOT_FOUND)
end
local status = o[1]
if status == 'unpaid' and now_ms >= o[4] + 0 then
  -- Due but beyond this call's reclaim limit: expire it now.
  orders_expire(info_key, buyers_key, unpaid_key, order_prefix, order_id, o[2], o[4], outbox)
  orders_next_deadline(info_key, unpaid_key)
  status = 'expired'
end

local outcome = DONE
if action == 'read' then
  outcome = DONE
elseif action == 'cancel' or action == 'pay' then
  if status ~= 'unpaid' then
    outcome = INVALID_STATE
  elseif action == 'pay' and amount + 0 ~= o[3] + 0 then
    outcome = AMOUNT_MISMATCH
  else
    redis.call('ZREM', unpaid_key, order_id .. ':' .. o[2])
    if action == 'cancel' then
      redis.call('HSET', order_key, 'status', 'cancelled', 'updated', now_text)
      redis.call('HDEL', buyers_key, o[2])
      redis.call('HINCRBY', info_key, 'remaining', 1)
    else
      redis.call('HSET', order_key, 'status', 'paid', 'pay_type', pay_type,
        'pay_time', now_text, 'updated', now_text)
    end
    orders_changed(outbox, order_prefix, order_id)
    orders_next_deadline(info_key, unpaid_key)
  end
elseif action ~= 'use' and action ~= 'refund' then
  return outcome_only(BAD_ACTION)
elseif status ~= 'paid' then
  outcome = INVALID_STATE
else
  if action == 'use' then
    redis.call('HSET', order_key, 'status', 'used', 'use_time', now_text, 'updated', now_text)
  else
    redis.call('HSET', order_key, 'status', 'refunded', 'refund_time', now_text, 'updated', now_text)
  end
  orders_changed(outbox, order_prefix, order_id)
end

if has_event == '1' then
  redis.call('SET', event_key, outcome, 'PX', event_ttl_ms)
end
return orders_append({ outcome, 0 }, order_prefix, order_id, now_ms)
