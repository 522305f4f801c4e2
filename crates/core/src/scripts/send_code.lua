-- Stores a new login code for a phone, if the resend gap and every cap
-- allow it.
--
--@ uses gcra
--> key code                 the phone's code: hash {digest, attempts}
--> key gap                  present while a resend is too early
--> key lock                 present after too many wrong codes
--> keys limiters            per phone per day, per IP per hour, per IP, global
--> arg digest str           digest of the new code (never the code itself)
--> arg ttl_ms int           the code's lifetime
--> arg gap_ms int           the resend gap
--> args limits              quota and window (ms) of each limiter
--
--< outcome stored           replacing any earlier code, clearing the lock
--< outcome too_early        too soon after the last code; nothing counted
--< outcome limited          a limiter refused; nothing counted or stored
--< field retry_after_ms int
--< rest states              remaining and reset_ms per limiter

local now = now_us()
local limits = gcra_limits(limiters_first_key, limits_first_arg)

local function reply(outcome, retry_after_ms, states)
  return gcra_append_states({ outcome, retry_after_ms }, #limits, states)
end

local gap = redis.call('PTTL', gap_key)
if gap > 0 then
  return reply(TOO_EARLY, gap, nil)
end

local allowed, retry_after, states = gcra_check(now, limits)
if not allowed then
  return reply(LIMITED, math.ceil(retry_after / 1000), states)
end

redis.call('DEL', code_key, lock_key)
redis.call('HSET', code_key, 'digest', digest, 'attempts', 0)
redis.call('PEXPIRE', code_key, ttl_ms)
redis.call('SET', gap_key, 1, 'PX', gap_ms)
return reply(STORED, 0, states)
