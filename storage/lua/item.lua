-- Record a paid item's state, only while this job still holds the session (fenced).
-- KEYS[1] session lock, KEYS[2] the session's paid-items hash; with a cost also KEYS[3] the
-- workspace's spend hash for the day (spend.lua)
-- ARGV[1] fence token, ARGV[2] item field, ARGV[3] item JSON, ARGV[4] ttl (s); with a cost
-- also ARGV[5] the item's id in the spend hash, ARGV[6] cost (USD), ARGV[7] spend ttl (s)
-- The cost is counted first and whatever the lease: the money is spent either way, and once
-- per item (a replay or a re-send adds nothing).
-- Returns 1 written, -1 the lease is someone else's (the item not written).
if #KEYS == 3 then
  if redis.call('HSETNX', KEYS[3], ARGV[5], ARGV[6]) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[3], '_total', ARGV[6])
  end
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
