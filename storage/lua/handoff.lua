-- The eager lane hands a job over to the workers. KEYS[1] session lock, KEYS[2] the job's eager
-- marker, KEYS[3] the session's delivery ledger; ARGV[1] our token, ARGV[2] marker ttl (s),
-- ARGV[3] how it ended: "shown" (its first change is up), "handed" (nothing left half-done) or
-- "running" (it failed part-way: a post may have landed unrecorded), ARGV[4] the job id, ARGV[5]
-- reservation (ms), ARGV[6] the ledger's ttl (s), ARGV[7..] slot, ts, ... the lane posted.
-- The ledger records first, whoever holds the lease now: they name real messages, and the first
-- record of a slot wins (as hput.lua's keep-first). A slot already recorded with another ts is
-- returned: two messages were posted for it, and the lane deletes its own.
-- "shown": the lease is not freed but reserved for this job's worker (acquire.lua with the job
-- id takes it), so no other job of the session — a thread reply — slips in between the lane
-- and the rest of its job. The reservation runs out if that worker never comes.
-- Only while we still hold the lease: otherwise a worker owns the job now and the marker stays
-- "running", so that worker looks in Slack for anything this attempt posted.
-- Returns {1 if the lease was ours else 0, the slots whose record was another message's ...}.
local lost = write_records(KEYS[3], ARGV[6], 7)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, unpack(lost)}
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
if ARGV[3] == 'shown' then
  redis.call('SET', KEYS[1], 'handoff:' .. ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return {1, unpack(lost)}
