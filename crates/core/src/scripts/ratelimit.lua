-- Checks several rate limits at once, all or nothing (see gcra.lua, which
-- is prepended to this file).
--
-- KEYS[i]     limiter key of limit i, e.g. {gate}:rl:catalog:ip:127.0.0.1
-- ARGV[2i-1]  quota of limit i (requests per window)
-- ARGV[2i]    window of limit i, in milliseconds
--
-- Reply: {allowed (1 or 0), retry_after_ms,
--         remaining_1, reset_ms_1, remaining_2, reset_ms_2, ...}

local limits = gcra_limits(1, 1)
local allowed, retry_after, states = gcra_check(now_us(), limits)
return gcra_append_states({ allowed and 1 or 0, math.ceil(retry_after / 1000) }, #limits, states)
