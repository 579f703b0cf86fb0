-- Take a session's lease if free. KEYS[1] lock, KEYS[2] fence counter, KEYS[3] session;
-- ARGV[1] lease (ms), ARGV[2] fence ttl for an existing session (s), ARGV[3] otherwise (s).
-- Returns the new fence token (a number that only grows), or 0 if the lease is held.
-- The fence expires with the session (a forged click for no session leaves nothing lasting).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local token = redis.call('INCR', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
else
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
