-- Signs in with a login code: checks the code (counting wrong attempts per
-- client and in all), finds or creates the user, and opens a session.
--
--@ uses gcra
--> key code                 the phone's code: hash {digest, attempts, and
--                               ip:<client> per client that gave a wrong code}
--> key lock                 present while the phone is locked
--> key user_id              the phone's user id
--> key user_sequence        the phone's shard's sequence of new users
--> key session              the new session, in the phone's shard
--> keys limiters            per IP (when known), global, when they share the
--                               phone's shard; none when `limit.lua` applied
--                               them first in the client's
--> arg digest str           digest of the code given
--> arg client_field str     this client's field in the code's hash
--> arg max_per_client int   wrong codes one client may give before it is
--                               refused this code
--> arg max_per_phone int    wrong codes all clients together may give before
--                               the code is voided and the phone locked
--> arg lock_ms int          how long the lock lasts
--> arg phone str            stored on a new user and in the session
--> arg new_nickname str     a new user's nickname
--> arg user_prefix str      what precedes a user id in a user's key, in the
--                               phone's shard
--> arg shard_count int      the number of the gate's shards
--> arg shard_index int      the phone's shard
--> arg idle_ms int          session idle timeout
--> args limits              quota and window (ms) of each limiter
--
--< outcome signed_in
--< outcome elsewhere        the code was right and consumed, and the user
--                               lives in another shard: no session was
--                               opened here (see open_session.lua)
--< outcome wrong_code       wrong, expired or never-sent code
--< outcome limited          a limiter refused
--< outcome locked           locked after too many wrong codes
--< outcome client_locked    this client gave too many wrong codes for this
--                               code (which stays valid for others); retry
--                               after the code's life
--< field retry_after_ms int
--< field user_id int
--< field nickname str
--< rest states              remaining and reset_ms per limiter
--
-- The user record (user_prefix .. id) is named from the id found or
-- created, in this same slot: a new user's id is the shard's next number
-- times shard_count plus shard_index, so it names the phone's shard, where
-- the user then lives (shard.rs). The per-client counts are fields of the
-- code's hash, so they share its lifetime: a new code or the code's
-- expiry clears them.

local now = now_us()
local now_ms = math.floor(now / 1000)
local limits = gcra_limits(limiters_first_key, limits_first_arg)

local function reply(outcome, retry_after_ms, uid, nickname, states)
  return gcra_append_states({ outcome, retry_after_ms, uid, nickname }, #limits, states)
end

local allowed, retry_after, states = gcra_check(now, limits)
if not allowed then
  return reply(LIMITED, math.ceil(retry_after / 1000), 0, '', states)
end

local lock = redis.call('PTTL', lock_key)
if lock > 0 then
  return reply(LOCKED, lock, 0, '', states)
end

local code = redis.call('HMGET', code_key, 'digest', client_field)
local stored = code[1]
if not stored then
  return reply(WRONG_CODE, 0, 0, '', states)
end

-- A client out of tries is refused before the code is compared, and its
-- attempt is not counted: it learns nothing and cannot use up the phone's
-- allowance.
local per_client = max_per_client + 0
if code[2] and code[2] + 0 >= per_client then
  return reply(CLIENT_LOCKED, math.max(0, redis.call('PTTL', code_key)), 0, '', states)
end

-- Compare without stopping at the first difference.
local given = digest
local diff = (#stored == #given) and 0 or 1
for i = 1, math.min(#stored, #given) do
  if string.byte(stored, i) ~= string.byte(given, i) then diff = 1 end
end
if diff ~= 0 then
  local attempts = redis.call('HINCRBY', code_key, 'attempts', 1)
  if attempts >= max_per_phone + 0 then
    redis.call('DEL', code_key)
    redis.call('SET', lock_key, 1, 'PX', lock_ms)
    return reply(LOCKED, lock_ms + 0, 0, '', states)
  end
  if redis.call('HINCRBY', code_key, client_field, 1) >= per_client then
    return reply(CLIENT_LOCKED, math.max(0, redis.call('PTTL', code_key)), 0, '', states)
  end
  return reply(WRONG_CODE, 0, 0, '', states)
end

redis.call('DEL', code_key)
local uid = redis.call('GET', user_id_key)
local nickname
if uid then
  if (uid + 0) % shard_count ~= shard_index + 0 then
    return reply(ELSEWHERE, 0, uid + 0, '', states)
  end
  nickname = redis.call('HGET', user_prefix .. uid, 'nickname') or ''
else
  local n = redis.call('INCR', user_sequence_key)
  uid = string.format('%d', n * shard_count + shard_index)
  nickname = new_nickname
  redis.call('SET', user_id_key, uid)
  redis.call('HSET', user_prefix .. uid, 'phone', phone, 'nickname', nickname, 'created', now_ms)
end
-- The session carries the (immutable) phone and nickname, so the gate
-- needs no second read to know who is calling.
redis.call('HSET', session_key, 'uid', uid, 'created', now_ms, 'phone', phone, 'nickname', nickname)
redis.call('PEXPIRE', session_key, idle_ms)
return reply(SIGNED_IN, 0, tonumber(uid), nickname, states)
