-- Add one paid item's cost to its workspace's spending of the day, once per item.
-- KEYS[1] the workspace's spend hash for the day
-- ARGV[1] item id, ARGV[2] cost (USD), ARGV[3] ttl (s)
-- A re-sent or replayed record finds its item already counted and adds nothing.
-- Returns the day's total as a string.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[1], '_total', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], '_total') or '0'
