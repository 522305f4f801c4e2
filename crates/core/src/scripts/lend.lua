-- Lends units of one part of a split voucher to another part that ran out
-- (part.rs): takes half of what is left here (at least one unit, when any
-- is), after putting back on sale the units of orders whose deadline has
-- passed, and notes the transfer until the receiving part is seen to have
-- it. Also answers the transfers noted more than stale_ms ago, which a
-- crash may have left unreceived, for the caller to complete.
--
--@ uses orders
--@ replayable a replay finds its transfer noted and lends nothing more
--> key info                 the part's record
--> key buyers               its active orders by user
--> key unpaid               its unpaid orders by deadline
--> key outbox               its order outbox; not touched with export off
--> key export_wake          the flag of a pending wake-up of the exporter
--> key lent                 transfer id -> "<to part>|<units>|<ms>"
--> arg order_prefix str     the key of an order of this part, without the id
--> arg reclaim_limit int    the most expired orders to put back on sale
--> arg part_ref str         this part, as a wake-up of the exporter names it
--> arg export flag          append each change of an order to the outbox
--> arg transfer_id str      names this transfer, unique to the purchase
--> arg to str               the receiving part (VoucherPart::reference)
--> arg stale_ms int         how old a noted transfer must be to be answered
--
--< field units int          lent now (0: none left here, or the sale is over)
--< rest stale               transfer id, receiving part and units of each
--                               stale transfer

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)

local stale = {}
local noted = redis.call('HGETALL', lent_key)
for i = 1, #noted, 2 do
  local dest, lent, ms = string.match(noted[i + 1], '^([^|]+)|(%d+)|(%d+)$')
  if noted[i] ~= transfer_id and ms and now_ms - ms >= stale_ms + 0 then
    stale[#stale + 1] = noted[i]
    stale[#stale + 1] = dest
    stale[#stale + 1] = lent + 0
  end
end

local function answer(units)
  local reply = { units }
  for _, v in ipairs(stale) do
    reply[#reply + 1] = v
  end
  return reply
end

if redis.call('HEXISTS', lent_key, transfer_id) == 1 then
  return answer(0)
end
local info = redis.call('HMGET', info_key, 'end', 'remaining', 'next_deadline')
if not info[1] or now_ms >= info[1] + 0 then
  return answer(0)
end
local back = orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix, info[3], now_ms,
  reclaim_limit, { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
    on = export == '1' })
local left = info[2] + back
if left <= 0 then
  return answer(0)
end
local units = math.ceil(left / 2)
redis.call('HINCRBY', info_key, 'remaining', -units)
redis.call('HSET', lent_key, transfer_id, to .. '|' .. string.format('%d', units) .. '|'
  .. string.format('%d', now_ms))
return answer(units)
