-- Signs in with a login code: checks the code (counting wrong attempts per
-- client and in all), finds or creates the user, and opens a session.
-- gcra.lua is prepended.
--
-- KEYS[1]    code      {gate}:code:<phone>
--                      hash {digest, attempts, ip:<client> per client}
-- KEYS[2]    lock      {gate}:code-locked:<phone>
-- KEYS[3]    user id by phone  {gate}:uid:<phone>
-- KEYS[4]    user id sequence  {gate}:user-seq
-- KEYS[5]    the new session   {gate}:sess:<sha256 of token>
-- KEYS[6..]  limiters: per IP, global
-- ARGV[1]    digest of the code given
-- ARGV[2]    this client's field in the code hash (ip:<client>)
-- ARGV[3]    wrong codes one client may give before it is refused this code
-- ARGV[4]    wrong codes all clients together may give before the code is
--            voided and the phone locked
-- ARGV[5]    how long the lock lasts, ms
-- ARGV[6]    phone (stored on a new user)
-- ARGV[7]    nickname for a new user
-- ARGV[8]    session idle timeout, ms
-- ARGV[9..]  quota and window (ms) of each limiter in KEYS[6..]
--
-- The user record {gate}:user:<id> is named from the id found or created,
-- in this same slot. The per-client counts are fields of the code's hash,
-- so they share its lifetime: a new code or the code's expiry clears them.
--
-- Reply: {outcome, retry_after_ms, user_id, nickname, then remaining and
--         reset_ms per limiter}
--   outcome 1: signed in            2: wrong, expired or never-sent code
--   outcome 3: a limiter refused    4: locked after too many wrong codes
--   outcome 5: this client gave too many wrong codes for this code (the
--              code stays valid for others); retry after the code's life

local now = now_us()
local now_ms = math.floor(now / 1000)
local limits = gcra_limits(6, 9)

local function reply(outcome, retry_after_ms, uid, nickname, states)
  return gcra_append_states({ outcome, retry_after_ms, uid, nickname }, #limits, states)
end

local allowed, retry_after, states = gcra_check(now, limits)
if not allowed then
  return reply(3, math.ceil(retry_after / 1000), 0, '', states)
end

local lock = redis.call('PTTL', KEYS[2])
if lock > 0 then
  return reply(4, lock, 0, '', states)
end

local code = redis.call('HMGET', KEYS[1], 'digest', ARGV[2])
local stored = code[1]
if not stored then
  return reply(2, 0, 0, '', states)
end

-- A client out of tries is refused before the code is compared, and its
-- attempt is not counted: it learns nothing and cannot use up the phone's
-- allowance.
local per_client = ARGV[3] + 0
if code[2] and code[2] + 0 >= per_client then
  return reply(5, math.max(0, redis.call('PTTL', KEYS[1])), 0, '', states)
end

-- Compare without stopping at the first difference.
local given = ARGV[1]
local diff = (#stored == #given) and 0 or 1
for i = 1, math.min(#stored, #given) do
  if string.byte(stored, i) ~= string.byte(given, i) then diff = 1 end
end
if diff ~= 0 then
  local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  if attempts >= ARGV[4] + 0 then
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], 1, 'PX', ARGV[5])
    return reply(4, ARGV[5] + 0, 0, '', states)
  end
  if redis.call('HINCRBY', KEYS[1], ARGV[2], 1) >= per_client then
    return reply(5, math.max(0, redis.call('PTTL', KEYS[1])), 0, '', states)
  end
  return reply(2, 0, 0, '', states)
end

redis.call('DEL', KEYS[1])
local uid = redis.call('GET', KEYS[3])
local nickname
if uid then
  nickname = redis.call('HGET', '{gate}:user:' .. uid, 'nickname') or ''
else
  uid = tostring(redis.call('INCR', KEYS[4]))
  nickname = ARGV[7]
  redis.call('SET', KEYS[3], uid)
  redis.call('HSET', '{gate}:user:' .. uid, 'phone', ARGV[6], 'nickname', nickname, 'created', now_ms)
end
-- The session carries the (immutable) phone and nickname, so the gate
-- needs no second read to know who is calling.
redis.call('HSET', KEYS[5], 'uid', uid, 'created', now_ms, 'phone', ARGV[6], 'nickname', nickname)
redis.call('PEXPIRE', KEYS[5], ARGV[8])
return reply(1, 0, tonumber(uid), nickname, states)
