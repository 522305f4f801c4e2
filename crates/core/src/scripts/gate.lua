-- The request gate, one round trip before (or instead of) a request's
-- action: finds the session and slides its expiry, then applies the
-- endpoint's rate limits.
--
--@ uses gcra
--@ replayable a replay counts the request twice against its limits and
--     skips an order sequence number; nothing else changes
--> key session              <shard>:sess:<sha256 of token>; not read without a token
--> keys limiters            applied to every request: per IP (when the client's
--                               address is known), then global
--> arg has_token flag        whether the request carries a token
--> arg idle_ms int           session idle timeout
--> arg max_ms int            session absolute lifetime
--> arg user_prefix str       what precedes a user id in a user's key, in
--                               this shard
--> arg user_limiter str      per-user limiter key without the user id, which
--                               the script appends (the key lives in this slot);
--                               '' for none
--> arg user_quota int        quota of the per-user limit
--> arg user_window_ms int    window of the per-user limit
--> arg allocate_sequence flag take a number from today's order sequence
--> arg sequence_prefix str   what precedes the day number in this shard's
--                               order sequence key
--> arg needs_user flag       the endpoint needs a user: a token that finds no
--                               session is then counted per IP only, never
--                               against the global limit (the last limiter),
--                               so bad tokens cannot drain it; with no per-IP
--                               limit the global one still applies
--> args limits               quota and window (ms) of each limiter, in order
--
--< field user_id int         0: no valid session
--< field phone str
--< field nickname str
--< field allowed flag        every limit allowed the request
--< field retry_after_ms int
--< field now_ms int          Redis's clock, ms
--< field sequence int        the number taken from the order sequence, 0 if none
--< rest states               remaining and reset_ms of each limit applied: the
--                               per-user one first when a user was found, then
--                               the limiters (without the global one when
--                               needs_user dropped it)
--
-- The sequence is only touched for a signed-in user whose request every
-- limit allowed; its key (sequence_prefix and the day number) expires
-- two days after its day. The gate records nothing about the action to
-- come: what a user bought is recorded after the purchase succeeded (see
-- voucher.rs, lottery.rs), so refused or bogus attempts leave no trace.
--
-- Sessions are hashes {uid, created (ms), phone, nickname}; users are
-- hashes {phone, nickname, created} named user_prefix .. id. Every key
-- here is in one of the gate's shards: the session token's (its user's),
-- or without a token the client's (see shard.rs). The per-user
-- limit only counts signed-in users; the other limits count every request,
-- signed in or not.

local now = now_us()
local now_ms = math.floor(now / 1000)

local uid, uid_text, phone, nickname = 0, '0', '', ''
if has_token == '1' then
  local session = redis.call('HMGET', session_key, 'uid', 'created', 'phone', 'nickname')
  if session[1] then
    local max_left = (session[2] or 0) + max_ms - now_ms
    if max_left <= 0 then
      redis.call('DEL', session_key)
    else
      -- The idle timeout as given (a string) unless the lifetime ends sooner.
      redis.call('PEXPIRE', session_key, idle_ms + 0 <= max_left and idle_ms or max_left)
      uid, uid_text = session[1] + 0, session[1]
      if session[3] then
        phone, nickname = session[3], session[4] or ''
      else
        -- A session opened before sessions carried the profile.
        local user = redis.call('HMGET', user_prefix .. session[1], 'phone', 'nickname')
        phone, nickname = user[1] or '', user[2] or ''
      end
    end
  end
end

local limits = gcra_limits(limiters_first_key, limits_first_arg)
-- Unless the global limit is the only one (no client address known): then
-- it stays, so that such requests are limited at all.
if uid == 0 and needs_user == '1' and #limits > 1 then
  limits[#limits] = nil
end
if uid ~= 0 and user_limiter ~= '' then
  table.insert(limits, 1, gcra_limit(user_limiter .. uid_text, user_quota, user_window_ms))
end

local allowed, retry_after, states = gcra_check(now, limits)
local now_secs = math.floor(now / 1000000)
local sequence = 0
if allowed and uid ~= 0 then
  if allocate_sequence == '1' then
    local day = math.floor(now_secs / 86400)
    local seq_key = sequence_prefix .. string.format('%d', day)
    sequence = redis.call('INCR', seq_key)
    if sequence == 1 then
      redis.call('EXPIREAT', seq_key, (day + 2) * 86400)
    end
  end
end
local reply = { uid, phone, nickname, allowed and 1 or 0, math.ceil(retry_after / 1000), now_ms, sequence }
return gcra_append_states(reply, #limits, states)
