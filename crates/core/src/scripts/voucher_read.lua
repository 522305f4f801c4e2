-- Reads a voucher, after putting back on sale the units of orders whose
-- pay deadline has passed (at most reclaim_limit; see orders.lua), so that
-- `remaining` shows them as soon as they are due. Each order it expires
-- goes to the outbox when export is on (orders.lua).
--
--@ uses orders
--@ replayable a replay finds no order left to expire
--> key info                 the voucher
--> key buyers               its active orders by user
--> key unpaid               its unpaid orders by deadline
--> key outbox               its order outbox, a stream; not touched with
--                               export off
--> key export_wake          the flag of a pending wake-up of the exporter
--> key lent                 units this part lent to others and not yet seen
--                               received (a split voucher's; see part.rs)
--> arg order_prefix str     the key of an order of this voucher, without the id
--> arg reclaim_limit int    the most expired orders to put back on sale
--> arg part_ref str        the voucher's part, as a wake-up of the exporter names
--                               it (the voucher id when it is not split)
--> arg export flag          append each change of an order to the outbox
--
--< outcome found
--< outcome not_found
--< field shop_id id
--< field title str
--< field sub_title str
--< field rules str
--< field pay_value num      cents
--< field actual_value num   cents
--< field stock num
--< field remaining num
--< field begin num          ms
--< field end num            ms
--< field parts num          the parts the voucher's stock is split into
--< field lent num           units in transfer from this part to another

local v = redis.call('HMGET', info_key, 'shop_id', 'title', 'sub_title', 'rules', 'pay_value',
  'actual_value', 'stock', 'remaining', 'begin', 'end', 'next_deadline', 'parts')
if not v[1] then
  return outcome_only(NOT_FOUND)
end
if v[11] then
  local t = redis.call('TIME')
  local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
  -- Checked here before calling: a read with nothing due makes no outbox.
  if now_ms >= v[11] + 0 then
    local back = orders_reclaim(info_key, buyers_key, unpaid_key, order_prefix, v[11], now_ms,
      reclaim_limit, { stream = outbox_key, wake = export_wake_key, voucher = part_ref,
        on = export == '1' })
    v[8] = string.format('%d', v[8] + back)
  end
end
local lent = 0
if v[12] then
  for _, transfer in ipairs(redis.call('HVALS', lent_key)) do
    local _, _, units = string.find(transfer, '|(%d+)|')
    lent = lent + (units or 0)
  end
end
return { FOUND, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[12] or 1, lent }
