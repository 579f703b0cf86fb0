-- The eager lane hands a job over to the workers. KEYS[1] session lock, KEYS[2] the job's eager
-- marker; ARGV[1] our token, ARGV[2] marker ttl (s), ARGV[3] how it ended: "shown" (its first
-- change is up), "handed" (nothing left half-done) or "running" (it failed part-way: a post may
-- have landed unrecorded), ARGV[4] the job id, ARGV[5] reservation (ms).
-- "shown": the lease is not freed but reserved for this job's worker (acquire.lua with the job
-- id takes it), so no other job of the session — a thread reply — slips in between the lane
-- and the rest of its job. The reservation runs out if that worker never comes.
-- Only while we still hold the lease: otherwise a worker owns the job now and the marker stays
-- "running", so that worker looks in Slack for anything this attempt posted. Returns 1 if ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
if ARGV[3] == 'shown' then
  redis.call('SET', KEYS[1], 'handoff:' .. ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return 1
