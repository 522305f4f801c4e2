-- Opens a session in the user's shard when it is not their phone's: the
-- second step of a login whose `login.lua` answered `elsewhere` (a user
-- created before the shop's shard count changed; see shard.rs).
--
--> key user                 the user's record: hash {phone, nickname, created}
--> key session              the new session, in the user's shard
--> arg user_id int
--> arg phone str            stored in the session (and on a missing record)
--> arg new_nickname str     the nickname of a record that is missing
--> arg idle_ms int          session idle timeout
--
--< field nickname str

local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local nickname = redis.call('HGET', user_key, 'nickname')
if not nickname then
  -- The phone's index names this user and nothing else does: the record
  -- is written again rather than refusing the sign-in for ever.
  nickname = new_nickname
  redis.call('HSET', user_key, 'phone', phone, 'nickname', nickname, 'created', now_ms)
end
redis.call('HSET', session_key, 'uid', user_id, 'created', now_ms, 'phone', phone, 'nickname', nickname)
redis.call('PEXPIRE', session_key, idle_ms)
return { nickname }
