-- Record a paid item's state, only while this job still holds the session (fenced).
-- KEYS[1] session lock, KEYS[2] the session's paid-items hash, KEYS[3] as ARGV[5] says
-- ARGV[1] fence token, ARGV[2] item field, ARGV[3] item JSON, ARGV[4] ttl (s), ARGV[5] what
-- else goes with it:
--   'spend': the item's cost, in KEYS[3] the workspace's spend hash for the day (spend.lua):
--     ARGV[6] the item's id there, ARGV[7] cost (USD), ARGV[8] spend ttl (s). Counted first
--     and whatever the lease: the money is spent either way, and once per item (a replay or
--     a re-send adds nothing).
--   'record': the file the item was shared as, in KEYS[3] the session's delivery ledger:
--     ARGV[6] slot, ARGV[7] file id; with the item, so only with the lease, and the first
--     record of the slot wins (as hput.lua's keep-first).
--   '': nothing.
-- Returns {1, the slot's value after the write ('' without a record)} written, {-1, ''} the
-- lease is someone else's (nothing written but the cost).
if ARGV[5] == 'spend' then
  if redis.call('HSETNX', KEYS[3], ARGV[6], ARGV[7]) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[3], '_total', ARGV[7])
  end
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {-1, ''}
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[5] == 'record' then
  redis.call('HSETNX', KEYS[3], ARGV[6], ARGV[7])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return {1, redis.call('HGET', KEYS[3], ARGV[6])}
end
return {1, ''}
