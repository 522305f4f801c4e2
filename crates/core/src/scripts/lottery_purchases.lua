-- One page of a period's purchase records, in chain order (by first share
-- index): what anyone needs to recompute the period's digest, and to find
-- the purchase that holds a code once the draw reveals the seed. It never
-- returns the user id stored with each record for the draw.
--
--@ replayable it only reads
--> key period             the period: hash (read only to know it exists)
--> key purchases          its purchases: sorted set of
--                             "<record>|<digest after it>|<user id>" scored
--                             by first share index, where record is
--                             "pid|pseudonym|start|count|ms"
--> arg after int          only records whose first share index is above
--                             this; -1: from the first
--> arg limit int          at most this many records
--< outcome found
--< outcome not_found      no such goods or period
--< field more flag        records are left after this page
--< field count int        records in this page
--< rest records           for each: record, digest, first share index, shares

if redis.call('EXISTS', period_key) == 0 then
  return outcome_only(NOT_FOUND)
end
local n = tonumber(limit)
local members = redis.call('ZRANGE', purchases_key, '(' .. after, '+inf', 'BYSCORE', 'LIMIT', 0, n + 1)
local more = 0
if #members > n then
  more = 1
  members[#members] = nil
end
local reply = { FOUND, more, #members }
for _, m in ipairs(members) do
  local record, start, count, digest = string.match(m, '^([^|]*|[^|]*|([^|]*)|([^|]*)|[^|]*)|([^|]*)|')
  reply[#reply + 1] = record
  reply[#reply + 1] = digest
  reply[#reply + 1] = tonumber(start)
  reply[#reply + 1] = tonumber(count)
end
return reply
