-- Allocates an id for a new catalogue item (voucher or lottery goods) and
-- lists it, before the item itself is written: a listed id without an item
-- is skipped by readers, so a creation cut short leaves nothing visible.
--
-- KEYS[1]  the id sequence, e.g. {catalog}:voucher-seq
-- KEYS[2]  the listing (sorted set, score = id), e.g. {catalog}:shop:<id>:vouchers
--
-- Reply: {id}

local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, id)
return { id }
