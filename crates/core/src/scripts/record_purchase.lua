-- Adds a purchase to one of a user's lists, after the purchase succeeded.
-- A round trip of its own: the list lives in the user's hash slot, the
-- purchase in the item's, and no script may span two slots.
--
--> key list              a user's sorted set of voucher orders or lottery goods
--> arg score int         an order's creation ms, or the goods id
--> arg member str        the voucher or goods id
--< field added flag      the member was not listed yet

return { redis.call('ZADD', list_key, score, member) }
