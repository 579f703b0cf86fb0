-- Record a paid item's state, only while this job still holds the session (fenced).
-- KEYS[1] session lock, KEYS[2] the session's paid-items hash
-- ARGV[1] fence token, ARGV[2] item field, ARGV[3] item JSON, ARGV[4] ttl (s)
-- Returns 1 written, -1 the lease is someone else's (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
