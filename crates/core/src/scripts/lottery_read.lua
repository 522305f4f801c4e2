-- Reads a lottery goods and one of its periods. The period's seed is
-- returned only once the period is drawn.
--
--@ replayable it only reads
--> key info                 the goods
--> arg period int           period number, 0 for the current one
--> arg period_prefix str    the goods' period key without the number
--< outcome found
--< outcome not_found        no such goods or period
--< field title str
--< field total int
--< field price int
--< field base int
--< field max_periods int
--< field current_period int
--< field period int         the period read
--< field sold int
--< field status str         selling | drawn
--< field commitment str
--< field opened_ms int
--< field seed str           '' until drawn, like the fields after it (0 for numbers)
--< field digest str
--< field winning_code int
--< field winner str
--< field winner_purchase str
--< field drawn_ms int
--< field participants int

local info = redis.call('HMGET', info_key, 'title', 'total', 'price', 'base', 'max_periods', 'period')
if not info[1] then
  return outcome_only(NOT_FOUND)
end
local n = tonumber(period)
if n == 0 then n = tonumber(info[6]) end
local p = redis.call('HMGET', period_prefix .. n, 'sold', 'status', 'commitment', 'opened',
  'seed', 'digest', 'winning_code', 'winner', 'winner_purchase', 'drawn', 'participants')
if not p[1] then
  return outcome_only(NOT_FOUND)
end
local drawn = p[2] == 'drawn'
return {
  FOUND, info[1], tonumber(info[2]), tonumber(info[3]), tonumber(info[4]), tonumber(info[5]),
  tonumber(info[6]), n, tonumber(p[1]), p[2], p[3], tonumber(p[4]),
  drawn and p[5] or '', drawn and p[6] or '', tonumber(p[7] or 0), p[8] or '', p[9] or '',
  tonumber(p[10] or 0), tonumber(p[11] or 0),
}
