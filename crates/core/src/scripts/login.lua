-- Signs in with a login code: checks the code (counting wrong attempts),
-- finds or creates the user, and opens a session. gcra.lua is prepended.
--
-- KEYS[1]    code      {gate}:code:<phone>         hash {digest, attempts}
-- KEYS[2]    lock      {gate}:code-locked:<phone>
-- KEYS[3]    user id by phone  {gate}:uid:<phone>
-- KEYS[4]    user id sequence  {gate}:user-seq
-- KEYS[5]    the new session   {gate}:sess:<sha256 of token>
-- KEYS[6..]  limiters: per IP, global
-- ARGV[1]    digest of the code given
-- ARGV[2]    wrong attempts allowed before the code is voided
-- ARGV[3]    how long the lock lasts, ms
-- ARGV[4]    phone (stored on a new user)
-- ARGV[5]    nickname for a new user
-- ARGV[6]    session idle timeout, ms
-- ARGV[7..]  quota and window (ms) of each limiter in KEYS[6..]
--
-- The user record {gate}:user:<id> is named from the id found or created,
-- in this same slot.
--
-- Reply: {outcome, retry_after_ms, user_id, nickname, then remaining and
--         reset_ms per limiter}
--   outcome 1: signed in            2: wrong, expired or never-sent code
--   outcome 3: a limiter refused    4: locked after too many wrong codes

local now = now_us()
local now_ms = math.floor(now / 1000)
local limits = gcra_limits(6, 7)

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

local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then
  return reply(2, 0, 0, '', states)
end

-- Compare without stopping at the first difference.
local given = ARGV[1]
local diff = (#stored == #given) and 0 or 1
for i = 1, math.min(#stored, #given) do
  if string.byte(stored, i) ~= string.byte(given, i) then diff = 1 end
end
if diff ~= 0 then
  local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  if attempts >= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
    return reply(4, tonumber(ARGV[3]), 0, '', states)
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
  nickname = ARGV[5]
  redis.call('SET', KEYS[3], uid)
  redis.call('HSET', '{gate}:user:' .. uid, 'phone', ARGV[4], 'nickname', nickname, 'created', now_ms)
end
-- The session carries the (immutable) phone and nickname, so the gate
-- needs no second read to know who is calling.
redis.call('HSET', KEYS[5], 'uid', uid, 'created', now_ms, 'phone', ARGV[4], 'nickname', nickname)
redis.call('PEXPIRE', KEYS[5], ARGV[6])
return reply(1, 0, tonumber(uid), nickname, states)
