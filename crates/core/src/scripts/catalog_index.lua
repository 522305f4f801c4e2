-- Allocates an id for a new catalogue item (voucher or lottery goods) and
-- lists it, before the item itself is written: a listed id without an item
-- is skipped by readers, so a creation cut short leaves nothing visible.
--
--> key sequence          the id sequence, e.g. {catalog}:voucher-seq
--> key listing           sorted set of ids (score = id), e.g. a shop's vouchers
--< field id id           the new id

local id = redis.call('INCR', sequence_key)
redis.call('ZADD', listing_key, id, id)
return { id }
