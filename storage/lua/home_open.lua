-- Someone opened their App Home (or turned its page): remember them as a viewer, keep the page
-- they are on, and mark their Home due at once (score 0) for the worker's Home publisher.
-- KEYS[1] viewers zset, KEYS[2] dirty zset, KEYS[3] pages hash (the publisher's list of teams,
-- which has no team's hash tag, is written beside it: storage/home.py)
-- ARGV[1] user, ARGV[2] page ('' = keep the one they are on), ARGV[3] ttl (s)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl * 1000)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('EXPIRE', KEYS[2], ttl)
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[3], ttl)
return 1
