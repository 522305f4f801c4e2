-- Writes a new lottery goods and opens its period 1; perm.lua and
-- sha256.lua are prepended.
--
-- KEYS[1]  {g:<id>}:info   hash {title, total, price, base, max_periods, period, state, root}
-- KEYS[2]  {g:<id>}:p:1    the period: hash {sold, perm, commitment, digest, opened, status}
-- ARGV[1..5]  title, total shares, share price, code base, max periods (0 = unlimited)
-- ARGV[6]     the goods' secret root (64 hex digits), from which every
--             period's seed is made inside the scripts: period_seed(root, n).
--             A seed is never an argument nor written before its draw (a
--             period keeps perm_key(seed) for its codes), so it shows in
--             neither MONITOR nor SLOWLOG; the root shows once, here.
--
-- Reply: {opened_ms, commitment}

local seed = period_seed(ARGV[6], 1)
local commitment = sha256_hex(seed)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'title', ARGV[1], 'total', ARGV[2], 'price', ARGV[3],
  'base', ARGV[4], 'max_periods', ARGV[5], 'period', 1, 'state', 'selling', 'root', ARGV[6])
redis.call('HSET', KEYS[2], 'sold', 0, 'perm', perm_key(seed), 'commitment', commitment,
  'digest', '', 'opened', now_ms, 'status', 'selling')
return { now_ms, commitment }
