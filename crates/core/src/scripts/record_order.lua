-- Files a placed voucher order under its buyer, after the purchase
-- succeeded: in the buyer's list of orders, and in the index that finds an
-- order's voucher from its id. A round trip of its own: these live in the
-- gate's slot, the order in the voucher's, and no script may span two
-- slots.
--
--> key list                 the buyer's orders: sorted set of
--                               "<voucher id>:<order id>" by creation (ms)
--> key index                the order's entry in the index
--> arg created_ms int       the score
--> arg member str           "<voucher id>:<order id>"
--> arg entry str            "<voucher id>:<user id>"
--< field added flag         the order was not filed yet

redis.call('SET', index_key, entry)
return { redis.call('ZADD', list_key, created_ms, member) }
