-- Take a session's lease if free. KEYS[1] lock, KEYS[2] fence counter; ARGV[1] lease (ms).
-- Returns the new fence token (a number that only grows), or 0 if the lease is held.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
