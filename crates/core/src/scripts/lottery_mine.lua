-- A user's purchases of one goods, with their codes; perm.lua is prepended.
--
-- KEYS[1]  {g:<id>}:info
-- KEYS[2]  {g:<id>}:u:<user>   list of "period|pid|start|count|ms"
-- ARGV[1]  only this period, or 0 for all
--
-- Reply: {purchases, then for each: purchase_id, period, created_ms, count, codes...}

local info = redis.call('HMGET', KEYS[1], 'total', 'base')
if not info[1] then
  return { 0 }
end
local total, base = tonumber(info[1]), tonumber(info[2])
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #'info')
local only = tonumber(ARGV[1])
local perms = {}
local reply = { 0 }
for _, record in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local period, pid, start, count, ms = string.match(record, '([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)')
  period, start, count = tonumber(period), tonumber(start), tonumber(count)
  if only == 0 or only == period then
    if not perms[period] then
      perms[period] = perm_new(redis.call('HGET', prefix .. 'p:' .. period, 'seed'), total)
    end
    reply[1] = reply[1] + 1
    reply[#reply + 1] = pid
    reply[#reply + 1] = period
    reply[#reply + 1] = tonumber(ms)
    reply[#reply + 1] = count
    for i = 0, count - 1 do
      reply[#reply + 1] = base + 1 + perm_forward(perms[period], start + i)
    end
  end
end
return reply
