-- Voucher orders after the purchase, shared by the scripts that sell, read
-- and change them (prepended to them). An order lives in its voucher's
-- slot, beside the stock, so that paying, cancelling and expiring it are
-- each one atomic change of the order and the stock together:
--
--   info      the voucher: remaining, next_deadline, ...
--   buyers    user id -> "<order id>:<created ms>" of the user's active order
--   unpaid    sorted set of "<order id>:<user id>" scored by pay deadline (ms)
--   order_prefix .. <order id>   the order: hash {user_id, status, amount,
--             pay_type, created, deadline, pay_time, use_time, refund_time,
--             updated, version}; times in ms, absent until they happen;
--             version counts its changes, 1 when it is created
--
-- `next_deadline` in the voucher's record is the earliest score in `unpaid`
-- (absent when it is empty): the read every script makes of the voucher
-- anyway tells whether an order has expired, so when none has, nothing
-- more is paid.
--
-- The outbox. Every change of an order bumps its version and, while orders
-- are exported, appends the order as it now is to the voucher's outbox
-- stream, in the script that makes the change: no change without its
-- event, no event without its change. A script tells orders_changed where
-- with a table it makes at most once per run, and only once an order
-- changes (a constructor in the script rather than a function here, which
-- every run would pay for):
--
--   { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
--     on = export == '1' }
--
--   stream    the voucher's outbox, a stream
--   wake      the flag that the exporter has been woken (PX 1000)
--   voucher   the voucher id, the message that wakes the exporter
--   on        whether orders are exported; off, only versions count

-- Records a change just made to order `oid`: its version goes up by one
-- and, when the outbox is on, the order as it now is is appended to the
-- stream: id, version, user_id, status, amount, pay_type, created,
-- deadline, pay_time, use_time, refund_time, updated ('' for what it
-- lacks). No MAXLEN: nothing may be dropped before the exporter has it.
-- Then the exporter is woken unless a wake-up is pending: the flag lives a
-- second, so a wake-up nobody heard delays an export by that at most.
--
-- A script that has just written a new order (version 1) passes its fields
-- instead, o[first] to o[first + 9] from user_id to updated, and calls
-- this only when the outbox is on: nothing is read back.
local function orders_changed(outbox, order_prefix, oid, o, first)
  -- Text: a number would be formatted as a double.
  local version = '1'
  if not o then
    local key = order_prefix .. oid
    version = redis.call('HINCRBY', key, 'version', 1)
    if not outbox.on then
      return
    end
    o, first = redis.call('HMGET', key, 'user_id', 'status', 'amount', 'pay_type', 'created',
      'deadline', 'pay_time', 'use_time', 'refund_time', 'updated'), 1
  end
  local f = first - 1
  redis.call('XADD', outbox.stream, '*', 'id', oid, 'version', version,
    'user_id', o[f + 1] or '', 'status', o[f + 2] or '', 'amount', o[f + 3] or '',
    'pay_type', o[f + 4] or '', 'created', o[f + 5] or '', 'deadline', o[f + 6] or '',
    'pay_time', o[f + 7] or '', 'use_time', o[f + 8] or '', 'refund_time', o[f + 9] or '',
    'updated', o[f + 10] or '')
  if redis.call('SET', outbox.wake, '1', 'NX', 'PX', 1000) then
    redis.call('PUBLISH', ORDER_EXPORT_CHANNEL, outbox.voucher)
  end
end

-- Expires one unpaid order: its buyer may buy again and its unit goes back
-- on sale. It expired at its deadline, whenever this runs, and says so.
local function orders_expire(info_key, buyers_key, unpaid_key, order_prefix, oid, uid, deadline,
    outbox)
  redis.call('HSET', order_prefix .. oid, 'status', 'expired', 'updated', deadline)
  orders_changed(outbox, order_prefix, oid)
  redis.call('HDEL', buyers_key, uid)
  redis.call('ZREM', unpaid_key, oid .. ':' .. uid)
  redis.call('HINCRBY', info_key, 'remaining', 1)
end

-- Sets next_deadline to the earliest deadline left in `unpaid` and returns
-- it (false when none is left).
local function orders_next_deadline(info_key, unpaid_key)
  local first = redis.call('ZRANGE', unpaid_key, 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('HSET', info_key, 'next_deadline', first[2])
    return first[2]
  end
  redis.call('HDEL', info_key, 'next_deadline')
  return false
end

-- When `next_deadline` (as the caller read it) has passed, expires at most
-- `limit` orders that are due, oldest first. Returns the units that came
-- back and the next deadline now.
local function orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix, next_deadline, now_ms,
    limit, outbox)
  if not next_deadline or now_ms < next_deadline + 0 then
    return 0, next_deadline
  end
  local due = redis.call('ZRANGEBYSCORE', unpaid_key, '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    local member = due[i]
    local sep = string.find(member, ':', 1, true)
    orders_expire(info_key, buyers_key, unpaid_key, order_prefix,
      string.sub(member, 1, sep - 1), string.sub(member, sep + 1), due[i + 1], outbox)
  end
  return #due / 2, orders_next_deadline(info_key, unpaid_key)
end

-- Appends order `oid` to `reply`: id, user id, status (an unpaid order past
-- its deadline reads expired, updated at its deadline), amount, pay type,
-- then the times created, deadline, pay_time, use_time, refund_time,
-- updated; '' for what is not there. Returns false when there is no such
-- order.
local function orders_append(reply, order_prefix, oid, now_ms)
  local o = redis.call('HMGET', order_prefix .. oid, 'user_id', 'status', 'amount', 'pay_type',
    'created', 'deadline', 'pay_time', 'use_time', 'refund_time', 'updated')
  if not o[1] then
    return false
  end
  local status = o[2]
  if status == 'unpaid' and now_ms >= o[6] + 0 then
    status, o[10] = 'expired', o[6]
  end
  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3] = oid, o[1], status
  for i = 3, 10 do
    reply[n + i + 1] = o[i] or ''
  end
  return reply
end
