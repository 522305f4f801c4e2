-- Finds which voucher an order belongs to, and who bought it: an order
-- lives in its voucher's slot, and its id does not say which voucher that
-- is. Also reads Redis's clock, which a webhook's signature is checked
-- against before anything changes.
--
--@ replayable it only reads
--> key index                the order's entry: "<part>:<user id>", where part
--                               is the voucher id, or its part for a split
--                               voucher (VoucherPart::reference)
--< field entry str          '' when there is no such order
--< field unix_secs int      Redis's clock

local t = redis.call('TIME')
return { redis.call('GET', index_key) or '', t[1] + 0 }
