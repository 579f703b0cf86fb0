-- The Home publisher takes the users whose Home has been waiting long enough: their first mark
-- is at least ARGV[1] ms old, so every change in that window is one views.publish. Taking and
-- removing is one step, so with several replicas each user is published by exactly one.
-- KEYS[1] dirty zset, KEYS[2] pages hash, KEYS[3] view hashes hash, KEYS[4] rate-limit pause
-- ARGV[1] settle (ms), ARGV[2] most users to take
-- Returns user, page, last view hash ('' = none) for each user taken; nothing while paused.
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
  'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, user in ipairs(due) do
  redis.call('ZREM', KEYS[1], user)
  out[#out + 1] = user
  out[#out + 1] = redis.call('HGET', KEYS[2], user) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[3], user) or ''
end
return out
