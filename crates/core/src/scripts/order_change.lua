-- Reads or changes one voucher order, each change one step of its life:
--
--   unpaid --pay--> paid --use--> used
--     |               +--refund--> refunded
--     +--cancel (by the owner)--> cancelled     (the unit back on sale)
--     +--the pay deadline passes--> expired     (the unit back on sale)
--
-- Orders whose deadline has passed are expired first (see orders.lua), so
-- a payment that comes too late finds the order expired. A change from the
-- wrong state changes nothing. Each change it makes, expiry included, goes
-- to the outbox when export is on (orders.lua); a refusal or a read writes
-- nothing to it.
--
-- Pay and refund come from the payment provider's webhook, which delivers
-- out of order and retries for days, so neither is ever refused: each gets
-- the outcome that says what became of the money (docs/ORDERS.md). A
-- refund before its payment is noted on the order (`refund_event`) and
-- applied when the payment comes: the order goes straight to refunded. An
-- outcome that can no longer change is kept under the event's id for
-- event_ttl_ms, and a repeat gets it and the order as it is, changing
-- nothing; a refund still waiting for its payment is not kept, so its
-- retries see the order as it then is. The outcomes the shop must act on
-- by hand are appended to the voucher's attention stream, once per event.
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
--> key attention            the voucher's money events to act on by hand, a
--                               stream
--> arg order_id str
--> arg action str           read | cancel | pay | refund | use
--> arg owner str            for read and cancel, the user who must own the
--                               order; '' for anyone
--> arg amount int           for pay: the amount paid, cents
--> arg pay_type str         for pay: alipay | wechat | card
--> arg event_id str         the webhook event's id; '' without one
--> arg event_ttl_ms int     how long an event's outcome is kept
--> arg order_prefix str     the key of an order of this voucher, without the id
--> arg reclaim_limit int    the most expired orders to put back on sale
--> arg part_ref str        the voucher's part, as a wake-up of the exporter names
--                               it (the voucher id when it is not split)
--> arg export flag          append each change of an order to the outbox
--
--< outcome done             read, or changed as asked: paid, refunded
--< outcome not_found        no such order (or not the owner's)
--< outcome invalid_state    the order's status does not allow the change
--< outcome bad_action       an action this script does not know
--< outcome paid_and_refunded  a payment whose refund came first: refunded
--< outcome refund_pending   a refund before its payment, noted on the order
--< outcome refund_recorded  a refund of an order that expired or was
--                               cancelled unpaid: noted, nothing to do
--< outcome already_refunded a refund of an order another event refunded
--< outcome late_refunded    a payment after expiry or cancel whose refund
--                               came already: nothing to do
--< outcome late_payment     a payment after expiry or cancel: refund it
--< outcome amount_mismatch  a payment of another amount: refund it
--< outcome duplicate_payment  a second payment of a paid order: refund it
--< outcome refund_after_use a refund of an order already used
--< field replayed flag      the answer to an event seen before
--< rest order               the order as it now is (orders_append);
--                               nothing when not found

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local now_text = string.format('%d', now_ms)

local outbox = { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
  on = export == '1' }
local next_deadline = redis.call('HGET', info_key, 'next_deadline')
orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix, next_deadline, now_ms, reclaim_limit,
  outbox)

if event_id ~= '' then
  local seen = redis.call('GET', event_key)
  if seen then
    return orders_append({ seen + 0, 1 }, order_prefix, order_id, now_ms) or outcome_only(NOT_FOUND)
  end
end

local order_key = order_prefix .. order_id
local o = redis.call('HMGET', order_key, 'status', 'user_id', 'amount', 'deadline', 'refund_event')
if not o[1] or (owner ~= '' and o[2] ~= owner) then
  return outcome_only(NOT_FOUND)
end
local status = o[1]
local early_refund = o[5]
if status == 'unpaid' and now_ms >= o[4] + 0 then
  -- Due but beyond this call's reclaim limit: expire it now.
  orders_expire(info_key, buyers_key, unpaid_key, order_prefix, order_id, o[2], o[4], outbox)
  orders_next_deadline(info_key, unpaid_key)
  status = 'expired'
end
local unpaid_then_gone = status == 'expired' or status == 'cancelled'

local outcome = DONE
if action == 'read' then
  outcome = DONE
elseif action == 'cancel' then
  if status ~= 'unpaid' then
    outcome = INVALID_STATE
  else
    redis.call('ZREM', unpaid_key, order_id .. ':' .. o[2])
    redis.call('HSET', order_key, 'status', 'cancelled', 'updated', now_text)
    redis.call('HDEL', buyers_key, o[2])
    redis.call('HINCRBY', info_key, 'remaining', 1)
    orders_changed(outbox, order_prefix, order_id)
    orders_next_deadline(info_key, unpaid_key)
  end
elseif action == 'pay' then
  if unpaid_then_gone then
    outcome = early_refund and LATE_REFUNDED or LATE_PAYMENT
  elseif status ~= 'unpaid' then
    outcome = DUPLICATE_PAYMENT
  elseif amount + 0 ~= o[3] + 0 then
    outcome = AMOUNT_MISMATCH
  else
    redis.call('ZREM', unpaid_key, order_id .. ':' .. o[2])
    if early_refund then
      redis.call('HSET', order_key, 'status', 'refunded', 'pay_type', pay_type,
        'pay_time', now_text, 'refund_time', now_text, 'updated', now_text)
      outcome = PAID_AND_REFUNDED
    else
      redis.call('HSET', order_key, 'status', 'paid', 'pay_type', pay_type,
        'pay_time', now_text, 'updated', now_text)
    end
    orders_changed(outbox, order_prefix, order_id)
    orders_next_deadline(info_key, unpaid_key)
  end
elseif action == 'refund' then
  if status == 'paid' then
    redis.call('HSET', order_key, 'status', 'refunded', 'refund_time', now_text, 'updated', now_text)
    orders_changed(outbox, order_prefix, order_id)
  elseif event_id == '' and status ~= 'refunded' then
    -- Only the provider's word says money went back before it came.
    outcome = INVALID_STATE
  elseif status == 'unpaid' or unpaid_then_gone then
    -- Not an order change (nothing exported): a note the payment reads.
    if not early_refund then
      redis.call('HSET', order_key, 'refund_event', event_id)
    end
    outcome = status == 'unpaid' and REFUND_PENDING or REFUND_RECORDED
  elseif status == 'used' then
    outcome = REFUND_AFTER_USE
  elseif early_refund ~= event_id then
    outcome = ALREADY_REFUNDED
  end
elseif action == 'use' then
  if status ~= 'paid' then
    outcome = INVALID_STATE
  else
    redis.call('HSET', order_key, 'status', 'used', 'use_time', now_text, 'updated', now_text)
    orders_changed(outbox, order_prefix, order_id)
  end
else
  return outcome_only(BAD_ACTION)
end

if event_id ~= '' and outcome ~= REFUND_PENDING then
  redis.call('SET', event_key, outcome, 'PX', event_ttl_ms)
  -- What the shop must do by hand.
  local kind = (outcome == LATE_PAYMENT and 'late_payment')
    or (outcome == AMOUNT_MISMATCH and 'amount_mismatch')
    or (outcome == DUPLICATE_PAYMENT and 'duplicate_payment')
    or (outcome == REFUND_AFTER_USE and 'refund_after_use')
  if kind then
    redis.call('XADD', attention_key, '*', 'event_id', event_id, 'order_id', order_id,
      'outcome', kind, 'amount', action == 'pay' and amount or '', 'time', now_text)
  end
end
return orders_append({ outcome, 0 }, order_prefix, order_id, now_ms)
