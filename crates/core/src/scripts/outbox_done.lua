-- Acknowledges order events the exporter has written to PostgreSQL and
-- removes them from the stream, which so holds only what is still to be
-- exported.
--
--> key outbox               the voucher's stream of order events
--> arg group str            the exporters' consumer group
--> args ids                 the entries' stream ids
--
--< field acknowledged int   how many were still pending

local ids = { unpack(ARGV, ids_first_arg) }
local acknowledged = redis.call('XACK', outbox_key, group, unpack(ids))
redis.call('XDEL', outbox_key, unpack(ids))
return { acknowledged }
