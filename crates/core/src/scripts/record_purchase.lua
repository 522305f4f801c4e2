-- Adds a purchase to one of a user's lists, after the purchase succeeded.
-- A round trip of its own: the list lives in the user's hash slot, the
-- purchase in the item's, and no script may span two slots.
--
-- KEYS[1]  the list, a sorted set: {gate}:user:<id>:voucher-orders or
--          {gate}:user:<id>:lottery-goods
-- ARGV[1]  the score (an order's creation ms, or the goods id)
-- ARGV[2]  the member (the voucher or goods id)
--
-- Reply: {1 if the member is new, else 0}

return { redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) }
