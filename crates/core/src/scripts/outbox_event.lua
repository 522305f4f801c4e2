-- An order event as the exporter's scripts hand it out (outbox_take.lua,
-- outbox_parked.lua): this file is prepended to them.
--
-- outbox_event(reply, n, fields) appends the event whose stream fields are
-- `fields` (name, value, name, value...) to `reply` after its n-th item, as
-- the order's id, version, user_id, status, amount, pay_type, created,
-- deadline, pay_time, use_time, refund_time and updated ('' for what it
-- lacks), and returns the position of the last item it wrote.

-- orders.lua writes an event's fields in this order, first; an entry
-- written so (a parked one has its error after them) is copied as it is,
-- any other is read by field name.
local OUTBOX_EVENT_FIELDS = { 'id', 'version', 'user_id', 'status', 'amount', 'pay_type',
  'created', 'deadline', 'pay_time', 'use_time', 'refund_time', 'updated' }

local function outbox_event(reply, n, fields)
  if #fields >= 24 and fields[1] == 'id' and fields[23] == 'updated' then
    for i = 2, 24, 2 do
      n = n + 1
      reply[n] = fields[i]
    end
    return n
  end
  local event = {}
  for i = 1, #fields, 2 do
    local name = fields[i]
    event[name] = fields[i + 1]
  end
  for _, name in ipairs(OUTBOX_EVENT_FIELDS) do
    n = n + 1
    reply[n] = event[name] or ''
  end
  return n
end
