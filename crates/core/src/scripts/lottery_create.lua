-- Writes a new lottery goods and opens its period 1.
--
--@ uses perm sha256
--> key info              the goods: hash {title, total, price, base,
--                            max_periods, period, state, root}
--> key first_period      period 1: hash {sold, perm, commitment, digest,
--                            opened, status}
--> arg title str
--> arg total int         shares per period
--> arg price int         price of a share, cents
--> arg base int          code base: codes are base + 1 ... base + total
--> arg max_periods int   0: unlimited
--> arg root str          the goods' secret root (64 hex digits), from which
--                            every period's seed is made inside the scripts:
--                            period_seed(root, n). A seed is never an argument
--                            nor written before its draw (a period keeps
--                            perm_key(seed) for its codes), so it shows in
--                            neither MONITOR nor SLOWLOG; the root shows
--                            once, here.
--< field opened_ms int
--< field commitment str  sha256 of period 1's seed

local seed = period_seed(root, 1)
local commitment = sha256_hex(seed)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', info_key, 'title', title, 'total', total, 'price', price,
  'base', base, 'max_periods', max_periods, 'period', 1, 'state', 'selling', 'root', root)
redis.call('HSET', first_period_key, 'sold', 0, 'perm', perm_key(seed), 'commitment', commitment,
  'digest', '', 'opened', now_ms, 'status', 'selling')
return { now_ms, commitment }
