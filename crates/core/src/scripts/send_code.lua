-- Stores a new login code for a phone, if the resend gap and every cap
-- allow it. gcra.lua is prepended to this file.
--
-- KEYS[1]    code      {gate}:code:<phone>         hash {digest, attempts}
-- KEYS[2]    gap       {gate}:code-gap:<phone>     exists while a resend is too early
-- KEYS[3]    lock      {gate}:code-locked:<phone>  exists after too many wrong codes
-- KEYS[4..]  limiters: per phone per day, per IP per hour, per IP, global
-- ARGV[1]    digest of the new code (never the code itself)
-- ARGV[2]    code lifetime, ms
-- ARGV[3]    resend gap, ms
-- ARGV[4..]  quota and window (ms) of each limiter in KEYS[4..]
--
-- Reply: {outcome, retry_after_ms, then remaining and reset_ms per limiter}
--   outcome 1: stored (replacing any earlier code, clearing the lock)
--   outcome 2: too early since the last code; nothing counted
--   outcome 3: a limiter refused; nothing counted or stored

local now = now_us()
local limits = gcra_limits(4, 4)

local function reply(outcome, retry_after_ms, states)
  return gcra_append_states({ outcome, retry_after_ms }, #limits, states)
end

local gap = redis.call('PTTL', KEYS[2])
if gap > 0 then
  return reply(2, gap, nil)
end

local allowed, retry_after, states = gcra_check(now, limits)
if not allowed then
  return reply(3, math.ceil(retry_after / 1000), states)
end

redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'attempts', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
return reply(1, 0, states)
