-- Write one field of a hash that lives as long as its session (or job), in one round trip:
-- the delivery ledger's slots and pending uploads, a job's cached LLM answers.
-- KEYS[1] hash; ARGV[1] field, ARGV[2] value, ARGV[3] ttl (s), ARGV[4] '1': keep a value
-- already there (the first writer wins), else overwrite.
-- Returns the field's value after the write (the winner's, with ARGV[4] = '1').
if ARGV[4] == '1' then
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], ARGV[1])
