-- Durable intake of one trigger: dedupe and enqueue, atomically.
-- KEYS[1] dedupe key, KEYS[2] jobs stream
-- ARGV[1] job id, ARGV[2] job payload (JSON), ARGV[3] dedupe ttl (s)
-- Returns 1 when enqueued, 0 when this trigger was seen before.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  return 0
end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'job', ARGV[2])
return 1
