-- Applies rate limits and nothing else: the first step of a request whose
-- limiters live in another of the gate's shards than the keys of its action
-- (sending a code or signing in, when the client's shard is not the
-- phone's; see shard.rs).
--
--@ uses gcra
--@ replayable a replay counts the request twice against its limits
--> keys limiters            the limits to apply, all in one shard
--> args limits              quota and window (ms) of each limiter
--
--< field allowed flag        every limit allowed the request
--< field retry_after_ms int
--< rest states              remaining and reset_ms per limiter

local limits = gcra_limits(limiters_first_key, limits_first_arg)
local allowed, retry_after, states = gcra_check(now_us(), limits)
return gcra_append_states({ allowed and 1 or 0, math.ceil(retry_after / 1000) }, #limits, states)
