-- The eager lane hands a job over to the workers. KEYS[1] session lock, KEYS[2] the job's eager
-- marker; ARGV[1] our token, ARGV[2] marker ttl (s), ARGV[3] how it ended: "shown" (the
-- placeholder is up), "handed" (nothing left half-done) or "running" (it failed part-way: a
-- post may have landed unrecorded).
-- Only while we still hold the lease: otherwise a worker owns the job now and the marker stays
-- "running", so that worker looks in Slack for anything this attempt posted. Returns 1 if ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1
