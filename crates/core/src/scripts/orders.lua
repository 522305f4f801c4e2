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
--             updated}; times in ms, absent until they happen
--
-- `next_deadline` in the voucher's record is the earliest score in `unpaid`
-- (absent when it is empty): the read every script makes of the voucher
-- anyway tells whether an order has expired, so when none has, nothing
-- more is paid.

-- Expires one unpaid order: its buyer may buy again and its unit goes back
-- on sale. It expired at its deadline, whenever this runs, and says so.
local function orders_expire(info_key, buyers_key, unpaid_key, order_prefix, oid, uid, deadline)
  redis.call('HSET', order_prefix .. oid, 'status', 'expired', 'updated', deadline)
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
local function orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix, next_deadline, now_ms, limit)
  if not next_deadline or now_ms < next_deadline + 0 then
    return 0, next_deadline
  end
  local due = redis.call('ZRANGEBYSCORE', unpaid_key, '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    local member = due[i]
    local sep = string.find(member, ':', 1, true)
    orders_expire(info_key, buyers_key, unpaid_key, order_prefix,
      string.sub(member, 1, sep - 1), string.sub(member, sep + 1), due[i + 1])
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
