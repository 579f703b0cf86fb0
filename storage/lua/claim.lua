-- A worker takes a session's lease for a job and, in the same round trip, reads everything the
-- job reads before it acts: while the lease is ours nobody else writes the session, its ledger,
-- versions or the job's markers, so these reads stay true for the job (storage/jobview.py).
-- KEYS[1] lock, KEYS[2] fence counter, KEYS[3] session, KEYS[4] the job's done marker,
-- KEYS[5] the job's eager marker, KEYS[6] tombstone, KEYS[7] history, KEYS[8] delivery ledger,
-- KEYS[9] the job's cached LLM answers, KEYS[10] versions
-- ARGV[1] lease (ms), ARGV[2] fence ttl for an existing session (s), ARGV[3] otherwise (s),
-- ARGV[4] the job id (a lease reserved for it by the eager lane is its: lease.lua)
-- Returns {0} if the lease is held, else {token, done, eager, tombstone, session data,
-- history, ledger (field, value, ...), LLM answers (step, value, ...), the current version's
-- field, its value} ('' for what doesn't exist).
local token = take_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if token == 0 then
  return {0}
end
local data = redis.call('HGET', KEYS[3], 'data') or ''
local field, current = '', ''
if data ~= '' then
  -- The version the session is at (its stage's): what a feedback answer or the next version
  -- is written from. Fields as keys.version_field names them.
  local ok, s = pcall(cjson.decode, data)
  if ok and type(s) == 'table' and tonumber(s.version) and tonumber(s.version) > 0 then
    local n = string.format('%d', tonumber(s.version))
    field = s.stage == 'story' and n or (tostring(s.stage) .. ':' .. n)
    current = redis.call('HGET', KEYS[10], field) or ''
  end
end
return {
  token,
  redis.call('GET', KEYS[4]) or '',
  redis.call('GET', KEYS[5]) or '',
  redis.call('GET', KEYS[6]) or '',
  data,
  redis.call('LRANGE', KEYS[7], 0, -1),
  redis.call('HGETALL', KEYS[8]),
  redis.call('HGETALL', KEYS[9]),
  field,
  current,
}
