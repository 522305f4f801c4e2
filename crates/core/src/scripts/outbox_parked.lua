-- Reads a page of a voucher's parked order events (outbox_park.lua),
-- oldest first, for the operator. Writes nothing.
--
--@ uses outbox_event
--> key parked               the voucher's parked events
--> arg after str            the stream id the page starts after ('' from
--                               the start)
--> arg count int            the most events to return
--
--< field more flag          events are left after this page
--< rest events              per event: its stream id in parked, the SQLSTATE
--                               and message PostgreSQL refused it with, then
--                               the order's fields as outbox_take.lua hands
--                               them out

local from = '-'
if after ~= '' then
  from = '(' .. after
end
local limit = count + 0
local entries = redis.call('XRANGE', parked_key, from, '+', 'COUNT', limit + 1)
local more = 0
if #entries > limit then
  more = 1
  entries[#entries] = nil
end
local reply = { more }
local n = 1
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local event = {}
  for i = 1, #fields, 2 do
    local name = fields[i]
    event[name] = fields[i + 1]
  end
  reply[n + 1], reply[n + 2], reply[n + 3] = entry[1], event['error_code'] or '',
    event['error'] or ''
  n = outbox_event(reply, n + 3, fields)
end
return reply
