-- Hands the order exporter its next batch of one voucher's order events
-- (see orders.lua for how they are written). A run first takes over the
-- entries left pending for claim_idle_ms by other consumers (an exporter
-- that crashed or gave up), the whole pending list batch by batch from
-- claim_from on; once it has been through it, it reads new entries. An
-- entry stays pending until outbox_done.lua acknowledges it (or
-- outbox_park.lua parks it), so a batch that never reaches PostgreSQL is
-- handed out again. When there is nothing to hand out, the consumers left
-- with nothing pending are removed from the group.
--
--@ uses outbox_event
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
--> arg claim_from str       where in the pending list to go on taking over
--                               ('0-0' from its start), or '' to read new
--                               entries
--
--< field claimed int        how many of the entries were taken over
--< field cursor str         where to go on taking over next time, or '' once
--                               the pending list has been gone through
--< rest events              per entry: its stream id, then the order's id,
--                               version, user_id, status, amount, pay_type,
--                               created, deadline, pay_time, use_time,
--                               refund_time and updated ('' when absent)

local entries, claimed, cursor = {}, 0, ''
if first_take == '1' then
  redis.call('DEL', wake_key)
  if redis.call('EXISTS', outbox_key) == 0 then
    return { 0, '' }
  end
  -- The group is made on first use; it then exists for good (BUSYGROUP).
  redis.pcall('XGROUP', 'CREATE', outbox_key, group, '0')
end
if claim_from ~= '' then
  -- Entries that are not idle yet (a live run's batch) are passed over; the
  -- pending list is short, a batch per run that did not finish.
  cursor = claim_from
  repeat
    local claim = redis.call('XAUTOCLAIM', outbox_key, group, consumer, claim_idle_ms,
      cursor, 'COUNT', count)
    cursor, entries = claim[1], claim[2]
  until #entries > 0 or cursor == '0-0'
  if cursor == '0-0' then
    cursor = ''
  end
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
  return { 0, '' }
end

local reply = { claimed, cursor }
local n = 2
for _, entry in ipairs(entries) do
  n = n + 1
  reply[n] = entry[1]
  n = outbox_event(reply, n, entry[2])
end
return reply
