-- Moves a voucher's parked order events (outbox_park.lua) back into its
-- outbox, oldest first and without their error, once the operator has
-- fixed what PostgreSQL refused them for: the exporter then takes them as
-- new events, and parks again what is still refused. Versions make their
-- new place in the stream harmless.
--
--> key parked               the voucher's parked events
--> key outbox               the voucher's stream of order events
--> arg count int            the most events to move
--
--< field moved int          how many were moved
--< field left int           how many are still parked

local entries = redis.call('XRANGE', parked_key, '-', '+', 'COUNT', count)
for _, entry in ipairs(entries) do
  local fields, event, n = entry[2], {}, 0
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name ~= 'error_code' and name ~= 'error' and name ~= 'outbox_id' then
      event[n + 1], event[n + 2] = name, fields[i + 1]
      n = n + 2
    end
  end
  redis.call('XADD', outbox_key, '*', unpack(event))
  redis.call('XDEL', parked_key, entry[1])
end
return { #entries, redis.call('XLEN', parked_key) }
