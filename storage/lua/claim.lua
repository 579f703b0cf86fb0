-- A worker takes a session's lease for a job and, in the same round trip, reads everything the
-- job reads before it acts: while the lease is ours nobody else writes the session, its ledger,
-- versions or the job's markers, so these reads stay true for the job (storage/jobview.py).
-- KEYS[1] lock, KEYS[2] fence counter, KEYS[3] session, KEYS[4] the job's done marker,
-- KEYS[5] the job's eager marker, KEYS[6] tombstone, KEYS[7] history, KEYS[8] delivery ledger,
-- KEYS[9] the job's cached LLM answers, KEYS[10] versions, KEYS[11] paid items
-- ARGV[1] lease (ms), ARGV[2] fence ttl for an existing session (s), ARGV[3] otherwise (s),
-- ARGV[4] the job id (a lease reserved for it by the eager lane is its: lease.lua)
-- Returns {0} if the lease is held, else {token, done, eager, tombstone, session data,
-- history, ledger (field, value, ...), LLM answers (step, value, ...), versions (field, value,
-- ...), paid items (field, value, ...)} ('' for what doesn't exist).
local token = take_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if token == 0 then
  return {0}
end
local data = redis.call('HGET', KEYS[3], 'data') or ''
-- The versions a job reads: the current one of the session's stage (what a feedback answer or
-- the next version is written from) and each approved one (what a later stage is made from:
-- the story its images follow, the images its storyboard uses). Fields as keys.version_field
-- names them; a version is written once, so the job's view keeps them.
local fields, seen = {}, {}
local function want(stage, number)
  local n = tonumber(number)
  if n and n > 0 then
    local f = string.format('%d', n)
    if stage ~= 'story' then
      f = tostring(stage) .. ':' .. f
    end
    if not seen[f] then
      seen[f] = true
      fields[#fields + 1] = f
    end
  end
end
if data ~= '' then
  local ok, s = pcall(cjson.decode, data)
  if ok and type(s) == 'table' then
    want(s.stage, s.version)
    if type(s.approvals) == 'table' then
      for _, a in ipairs(s.approvals) do
        if type(a) == 'table' and a.act ~= 'confirm' then
          want(a.stage, a.version)
        end
      end
    end
  end
end
local versions = {}
if #fields > 0 then
  local values = redis.call('HMGET', KEYS[10], unpack(fields))
  for i, f in ipairs(fields) do
    if values[i] then
      versions[#versions + 1] = f
      versions[#versions + 1] = values[i]
    end
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
  versions,
  redis.call('HGETALL', KEYS[11]),
}
