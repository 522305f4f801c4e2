-- Finds which voucher an order belongs to, and who bought it: an order
-- lives in its voucher's slot, and its id does not say which voucher that
-- is. Also reads Redis's clock, which a webhook's signature is checked
-- against before anything changes.
--
--@ replayable it only reads
--> key index                the order's entry: "<voucher id>:<user id>"
--< field voucher_id id      0 when there is no such order
--< field user_id id
--< field unix_secs int      Redis's clock

local t = redis.call('TIME')
local entry = redis.call('GET', index_key)
if not entry then
  return { '', '', t[1] + 0 }
end
local sep = string.find(entry, ':', 1, true)
return { string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1), t[1] + 0 }
