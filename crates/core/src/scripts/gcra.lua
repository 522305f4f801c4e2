-- Rate limiting by GCRA (generic cell rate algorithm), shared by every script
-- that limits requests: this file is prepended to them.
--
-- A limit of `quota` requests per `window` lets `quota` requests through at
-- once and then one every window/quota: each key holds the limit's
-- theoretical arrival time (TAT, microseconds since the epoch) and expires
-- when that time is reached, at which point the limit is back to full.
--
-- Converting between strings and numbers is a large part of a script's
-- cost in Redis's Lua (`tonumber` about 2,000 instructions, a number
-- passed to redis.call or joined into a string 3,000 to 4,000), so these
-- functions coerce with `+ 0` (about 800) and format with string.format
-- (about 2,200).
--
-- gcra_check(now, limits): `limits` is a list of {key, quota, window_us}.
-- All limits are checked first and updated only if every one allows the
-- request, so a refused request consumes nothing. Returns
-- allowed (boolean), retry_after_us, and a flat list with remaining and
-- reset_us for each limit, in order. gcra_limits and gcra_append_states
-- below read limits from KEYS/ARGV and write their states into a reply.

local function now_us()
  local t = redis.call('TIME')
  return t[1] * 1000000 + t[2]
end

local function gcra_check(now, limits)
  local allowed = true
  local retry_after = 0
  local new_tats = {}
  local states = {}
  -- One MGET for every key: each redis.call has a fixed cost.
  local keys = {}
  for i, limit in ipairs(limits) do
    keys[i] = limit.key
  end
  local stored = #keys > 0 and redis.call('MGET', unpack(keys)) or {}
  for i, limit in ipairs(limits) do
    local interval = math.max(1, math.floor(limit.window_us / limit.quota))
    local tat = stored[i] and stored[i] + 0 or now
    if tat < now then tat = now end
    local new_tat = tat + interval
    if new_tat - now > limit.window_us then
      allowed = false
      retry_after = math.max(retry_after, new_tat - limit.window_us - now)
      states[2 * i - 1] = 0
      states[2 * i] = tat - now
    else
      new_tats[i] = new_tat
      states[2 * i - 1] = math.floor((limit.window_us - (new_tat - now)) / interval)
      states[2 * i] = new_tat - now
    end
  end
  if allowed then
    for i, limit in ipairs(limits) do
      local ttl_ms = math.max(1, math.ceil((new_tats[i] - now) / 1000))
      redis.call('SET', limit.key, string.format('%d', new_tats[i]),
        'PX', string.format('%d', ttl_ms))
    end
  end
  return allowed, retry_after, states
end

-- A limit from its key, quota and window in ms (numbers or strings).
local function gcra_limit(key, quota, window_ms)
  return { key = key, quota = quota + 0, window_us = window_ms * 1000 }
end

-- The limits a script was given: KEYS[first_key..] with their quota and
-- window (ms) in ARGV pairs starting at ARGV[first_arg].
local function gcra_limits(first_key, first_arg)
  local limits = {}
  for i = first_key, #KEYS do
    local a = first_arg + 2 * (i - first_key)
    limits[#limits + 1] = gcra_limit(KEYS[i], ARGV[a], ARGV[a + 1])
  end
  return limits
end

-- Appends remaining and reset_ms of `count` limits to `reply` (zeros when
-- there are no states, i.e. the limits were not checked).
local function gcra_append_states(reply, count, states)
  for i = 1, count do
    reply[#reply + 1] = states and states[2 * i - 1] or 0
    reply[#reply + 1] = states and math.ceil(states[2 * i] / 1000) or 0
  end
  return reply
end
