-- Parks one order event that PostgreSQL refused for its data (a constraint
-- or a trigger the shop added): the entry moves from the voucher's outbox
-- to its parked stream, with PostgreSQL's error after the event's fields,
-- and is acknowledged, so that the events after it are exported. Only an
-- entry still pending is parked: one that another run acknowledged or
-- parked first is left alone. outbox_unpark.lua moves it back.
--
--> key outbox               the voucher's stream of order events
--> key parked               the voucher's parked events
--> arg group str            the exporters' consumer group
--> arg entry_id str         the refused entry's stream id
--> arg code str             the SQLSTATE PostgreSQL refused it with
--> arg message str          PostgreSQL's message
--
--< field parked flag        it was pending and is now parked

local found = redis.call('XRANGE', outbox_key, entry_id, entry_id)[1]
if not found or redis.call('XACK', outbox_key, group, entry_id) == 0 then
  return { 0 }
end
local fields = found[2]
local n = #fields
fields[n + 1], fields[n + 2] = 'error_code', code
fields[n + 3], fields[n + 4] = 'error', message
fields[n + 5], fields[n + 6] = 'outbox_id', entry_id
redis.call('XADD', parked_key, '*', unpack(fields))
redis.call('XDEL', outbox_key, entry_id)
return { 1 }
