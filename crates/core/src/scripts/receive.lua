-- Receives units another part of a split voucher lent this one (lend.lua):
-- adds them to what is left here, once per transfer, and lets this part's
-- buyers search the other parts again at once.
--
--@ replayable a replay finds the transfer received and adds nothing
--> key info                 the receiving part's record
--> key received             the transfers it has received, a set
--> arg transfer_id str
--> arg units int
--
--< field added flag         the units were added now (not before)

if redis.call('SADD', received_key, transfer_id) == 0 then
  return { 0 }
end
redis.call('HINCRBY', info_key, 'remaining', units)
redis.call('HDEL', info_key, 'drained_until')
return { 1 }
