-- Durable intake of one trigger: dedupe and enqueue, atomically; optionally take the session's
-- lease for the listener's eager lane (it shows the first change right after the ack).
-- KEYS[1] dedupe key, KEYS[2] jobs stream; with the eager lane also
-- KEYS[3] session lock, KEYS[4] fence counter, KEYS[5] session, KEYS[6] the job's eager marker,
-- KEYS[7] tombstone, KEYS[8] history, KEYS[9] delivery ledger (read for the lane: jobview.py)
-- ARGV[1] job id, ARGV[2] job payload (JSON), ARGV[3] dedupe ttl (s); with the eager lane also
-- ARGV[4] lease (ms), ARGV[5] fence ttl for an existing session (s), ARGV[6] otherwise (s),
-- ARGV[7] eager marker ttl (s), ARGV[8] a new session's JSON (rev 1) to create if there is none
-- yet ('' for other triggers): a new /story's first commit, made here so the lane can post the
-- session card without a round trip first
-- The job's stream entry carries 'lane' when the eager lane took the lease (see below).
-- The marker says "running" until the lane hands the job over (handoff.lua): a worker that
-- finds it still running knows an attempt may have posted before it died.
-- With a signal (a Cancel: the job under way must see it without waiting for the lease it
-- holds) the last key is the signal key, set to ARGV[#ARGV] for an hour.
-- Returns {1, fence, session data, tombstone, history length, ledger (slot, ts, ...), created} when
-- enqueued and leased for the eager lane, {1, 0} when enqueued only (no eager lane, or the
-- session is busy), {0, 0} when seen before.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  return {0, 0}
end
if #KEYS == 3 or #KEYS == 10 then
  redis.call('SET', KEYS[#KEYS], ARGV[#ARGV], 'EX', 3600)
end
local token = 0
if #KEYS >= 9 then
  token = take_lease(KEYS[3], KEYS[4], KEYS[5], ARGV[4], ARGV[5], ARGV[6], '')
end
if token == 0 then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'job', ARGV[2])
  return {1, 0}
end
-- 'lane': the listener's eager lane holds the session for this job, so the worker that reads
-- it waits a moment before its first claim instead of spending a round trip on a lease it
-- can't have yet (storage/queue.py).
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'job', ARGV[2], 'lane', '1')
redis.call('SET', KEYS[6], 'running', 'EX', ARGV[7])
local data = redis.call('HGET', KEYS[5], 'data')
local created = 0
if not data and ARGV[8] ~= '' then
  redis.call('HSET', KEYS[5], 'rev', 1, 'data', ARGV[8])
  redis.call('EXPIRE', KEYS[5], ARGV[5])
  data, created = ARGV[8], 1
end
-- The session as it is now, and what the lane reads next: nobody can change them while we hold
-- the lease (replies may add turns to the history: its length is a snapshot, as any read).
return {
  1,
  token,
  data or '',
  redis.call('GET', KEYS[7]) or '',
  redis.call('LLEN', KEYS[8]),
  redis.call('HGETALL', KEYS[9]),
  created,
}
