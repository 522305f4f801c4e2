-- Writes a new lottery goods and opens its period 1.
--
-- KEYS[1]  {g:<id>}:info   hash {title, total, price, base, max_periods, period, state}
-- KEYS[2]  {g:<id>}:p:1    the period: hash {sold, seed, commitment, digest, opened, status}
-- ARGV[1..5]  title, total shares, share price, code base, max periods (0 = unlimited)
-- ARGV[6,7]   period 1's secret seed and its commitment (SHA-256 of the seed)
--
-- Reply: {opened_ms}

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'title', ARGV[1], 'total', ARGV[2], 'price', ARGV[3],
  'base', ARGV[4], 'max_periods', ARGV[5], 'period', 1, 'state', 'selling')
redis.call('HSET', KEYS[2], 'sold', 0, 'seed', ARGV[6], 'commitment', ARGV[7],
  'digest', '', 'opened', now_ms, 'status', 'selling')
return { now_ms }
