-- Hands the order exporter its next batch of one voucher's order events
-- (see orders.lua for how they are written). On a run's first take,
-- entries left pending for claim_idle_ms by another consumer (an exporter
-- that crashed or gave up) are taken over first; otherwise new entries are
-- read. An entry stays pending
-- until outbox_done.lua acknowledges it, so a batch that never reaches
-- PostgreSQL is handed out again. When there is nothing to hand out, the
-- consumers left with nothing pending are removed from the group.
--
--> key outbox               the voucher's stream of order events
--> key wake                 its wake-up flag, cleared on a run's first take so
--                               that an event written from now on wakes the
--                               exporter again
--> arg group str            the exporters' consumer group
--> arg consumer str         this exporter run's name in the group
--> arg claim_idle_ms int    how long another consumer's entry must have been
--                               pending before it is taken over
--> arg count int            the most entries to hand out
--> arg first_take flag      whether this is the run's first take
--
--< field claimed int        how many of the entries were taken over
--< rest events              per entry: its stream id, then the order's id,
--                               version, user_id, status, amount, pay_type,
--                               created, deadline, pay_time, use_time,
--                               refund_time and updated ('' when absent)

local entries, claimed = {}, 0
if first_take == '1' then
  redis.call('DEL', wake_key)
  if redis.call('EXISTS', outbox_key) == 0 then
    return { 0 }
  end
  -- The group is made on first use; it then exists for good (BUSYGROUP).
  redis.pcall('XGROUP', 'CREATE', outbox_key, group, '0')
  entries = redis.call('XAUTOCLAIM', outbox_key, group, consumer, claim_idle_ms,
    '0-0', 'COUNT', count)[2]
  claimed = #entries
end
if claimed == 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
    'STREAMS', outbox_key, '>')
  if read then
    entries = read[1][2]
  end
end

if #entries == 0 then
  local consumers = redis.call('XINFO', 'CONSUMERS', outbox_key, group)
  for _, c in ipairs(consumers) do
    local info = {}
    for i = 1, #c, 2 do
      local name = c[i]
      info[name] = c[i + 1]
    end
    if info['pending'] == 0 then
      redis.call('XGROUP', 'DELCONSUMER', outbox_key, group, info['name'])
    end
  end
  return { 0 }
end

-- orders.lua writes an event's fields in this order; an entry written so
-- is copied as it is, any other is read by field name.
local FIELDS = { 'id', 'version', 'user_id', 'status', 'amount', 'pay_type', 'created',
  'deadline', 'pay_time', 'use_time', 'refund_time', 'updated' }
local reply = { claimed }
local n = 1
for _, entry in ipairs(entries) do
  local fields = entry[2]
  n = n + 1
  reply[n] = entry[1]
  if #fields == 24 and fields[1] == 'id' and fields[23] == 'updated' then
    for i = 2, 24, 2 do
      n = n + 1
      reply[n] = fields[i]
    end
  else
    local event = {}
    for i = 1, #fields, 2 do
      local name = fields[i]
      event[name] = fields[i + 1]
    end
    for _, name in ipairs(FIELDS) do
      n = n + 1
      reply[n] = event[name] or ''
    end
  end
end
return reply
