-- Allocates a voucher id and lists it under its shop, before the voucher
-- itself is written (a listed id without a voucher is skipped by readers).
--
-- KEYS[1]  {catalog}:voucher-seq           last voucher id handed out
-- KEYS[2]  {catalog}:shop:<id>:vouchers    sorted set of the shop's voucher ids
--
-- Reply: {voucher_id}

local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, id)
return { id }
