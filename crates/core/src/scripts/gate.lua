-- The request gate, one round trip before (or instead of) a request's
-- action: finds the session and slides its expiry, then applies the
-- endpoint's rate limits. gcra.lua is prepended to this file.
--
-- KEYS[1]    session key {gate}:sess:<sha256 of token>; ignored when ARGV[1] is 0
-- KEYS[2..]  limiter keys applied to every request (per IP, global)
-- ARGV[1]    1 when the request carries a token, else 0
-- ARGV[2]    session idle timeout, ms
-- ARGV[3]    session absolute lifetime, ms
-- ARGV[4]    per-user limiter key prefix; the user id is appended, so the
--            key ({gate}:rl:<endpoint>:u:<id>) lives in this slot. '' = none
-- ARGV[5,6]  quota and window (ms) of the per-user limit
-- ARGV[7]    1 to allocate a number from today's order sequence
-- ARGV[8]    1 when the endpoint needs a user: a request whose token finds
--            no session is then counted per IP only, never against the
--            global limit (KEYS[#KEYS]), so bad tokens cannot drain it;
--            without a per-IP limit the global one still applies
-- ARGV[9..]  quota and window (ms) of each limit in KEYS[2..]; the global
--            limit comes last
--
-- Reply: {user_id (0: no valid session), phone, nickname, allowed (1|0),
--         retry_after_ms, unix_seconds, sequence (0 if none allocated),
--         then remaining and reset_ms of each applied limit: the per-user
--         one first when a user was found, then KEYS[2..] (without the
--         global one when ARGV[8] dropped it)}
--
-- The sequence is only touched for a signed-in user whose request every
-- limit allowed; the key {gate}:order-seq:<day> expires two days after its
-- day. The gate records nothing about the action to come: what a user
-- bought is recorded after the purchase succeeded (see voucher.rs,
-- lottery.rs), so refused or bogus attempts leave no trace.
--
-- Sessions are hashes {uid, created (ms), phone, nickname}; users are
-- {gate}:user:<id> hashes {phone, nickname, created}. The per-user limit
-- only counts signed-in users; the other limits count every request,
-- signed in or not.

local now = now_us()
local now_ms = math.floor(now / 1000)

local uid, uid_text, phone, nickname = 0, '0', '', ''
if ARGV[1] == '1' then
  local session = redis.call('HMGET', KEYS[1], 'uid', 'created', 'phone', 'nickname')
  if session[1] then
    local max_left = (session[2] or 0) + ARGV[3] - now_ms
    if max_left <= 0 then
      redis.call('DEL', KEYS[1])
    else
      -- The idle timeout as given (a string) unless the lifetime ends sooner.
      redis.call('PEXPIRE', KEYS[1], ARGV[2] + 0 <= max_left and ARGV[2] or max_left)
      uid, uid_text = session[1] + 0, session[1]
      if session[3] then
        phone, nickname = session[3], session[4] or ''
      else
        -- A session opened before sessions carried the profile.
        local user = redis.call('HMGET', '{gate}:user:' .. session[1], 'phone', 'nickname')
        phone, nickname = user[1] or '', user[2] or ''
      end
    end
  end
end

local limits = gcra_limits(2, 9)
-- Unless the global limit is the only one (no client address known): then
-- it stays, so that such requests are limited at all.
if uid == 0 and ARGV[8] == '1' and #limits > 1 then
  limits[#limits] = nil
end
if uid ~= 0 and ARGV[4] ~= '' then
  table.insert(limits, 1, gcra_limit(ARGV[4] .. uid_text, ARGV[5], ARGV[6]))
end

local allowed, retry_after, states = gcra_check(now, limits)
local now_secs = math.floor(now / 1000000)
local sequence = 0
if allowed and uid ~= 0 then
  if ARGV[7] == '1' then
    local day = math.floor(now_secs / 86400)
    local seq_key = '{gate}:order-seq:' .. string.format('%d', day)
    sequence = redis.call('INCR', seq_key)
    if sequence == 1 then
      redis.call('EXPIREAT', seq_key, (day + 2) * 86400)
    end
  end
end
local reply = { uid, phone, nickname, allowed and 1 or 0, math.ceil(retry_after / 1000), now_secs, sequence }
return gcra_append_states(reply, #limits, states)
