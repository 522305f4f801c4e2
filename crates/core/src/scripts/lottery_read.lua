-- Reads a lottery goods and one of its periods. The period's seed is
-- returned only once the period is drawn.
--
-- KEYS[1]  {g:<id>}:info
-- ARGV[1]  period number, 0 for the current one
--
-- Reply: {found (1|0), title, total, price, base, max_periods, current_period,
--         state, period, sold, status, commitment, opened_ms,
--         seed, digest, winning_code, winner, winner_purchase, drawn_ms,
--         participants}
-- (the draw fields are '' or 0 until the period is drawn; found is 0 and
-- nothing follows when the goods or the period does not exist)

local info = redis.call('HMGET', KEYS[1], 'title', 'total', 'price', 'base', 'max_periods', 'period', 'state')
if not info[1] then
  return { 0 }
end
local n = tonumber(ARGV[1])
if n == 0 then n = tonumber(info[6]) end
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #'info')
local p = redis.call('HMGET', prefix .. 'p:' .. n, 'sold', 'status', 'commitment', 'opened',
  'seed', 'digest', 'winning_code', 'winner', 'winner_purchase', 'drawn', 'participants')
if not p[1] then
  return { 0 }
end
local drawn = p[2] == 'drawn'
return {
  1, info[1], tonumber(info[2]), tonumber(info[3]), tonumber(info[4]), tonumber(info[5]),
  tonumber(info[6]), info[7], n, tonumber(p[1]), p[2], p[3], tonumber(p[4]),
  drawn and p[5] or '', drawn and p[6] or '', tonumber(p[7] or 0), p[8] or '', p[9] or '',
  tonumber(p[10] or 0), tonumber(p[11] or 0),
}
