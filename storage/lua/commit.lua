-- Compare-and-set commit of a session plus the writes that belong with it.
-- KEYS[1] session hash, KEYS[2] session lock, KEYS[3..] keys named by the ops
-- ARGV[1] expected rev, ARGV[2] fence token ('' = none held), ARGV[3] new session JSON,
-- ARGV[4] ttl (s), ARGV[5] number of ops, then per op: name, key index, arg1, arg2
--   HSET k field value | RPUSH k value - | SET k value ttl ('-': the session's) | XADD k job-id payload | DEL k - -
--   HDEL k field - (a job's cached LLM answer for one step, dropped with its result's commit)
--   FINISH jobs-stream group entry-id (the commit is the job's last step, its outcome already
--   shown: acknowledge and delete its stream entry and give the lease back, as finish.lua)
--   EXPIRE k - - (a key of the session's that this commit doesn't write: it lives as long)
--   ADOPT early-replies-list history-key jobs-stream:session-id (see intake_feedback.lua)
--   App Home index (storage/home.py): ZADD k member score (entries whose score — a session's
--   last change — is more than the ttl older than this one are of expired sessions: dropped)
--   | ZTRIM k keep - (the newest `keep`
--   stay) | VIEWERS viewers-set - - (the set the DIRTY ops after it check) | DIRTY dirty-set
--   user - (mark the user's Home to be published again, keeping the first mark's time, if
--   they opened the Home within the ttl)
-- Returns 1 committed, 0 revision conflict, -1 fence lost (another worker holds the session).
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then
  -- A client re-send of a commit that already applied (redis-py retries after a connection
  -- error) finds exactly its own data in place: report success, write nothing twice.
  if rev == tonumber(ARGV[1]) + 1 and redis.call('HGET', KEYS[1], 'data') == ARGV[3] then
    return 1
  end
  return 0
end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'rev', rev + 1, 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
local n = tonumber(ARGV[5])
local i = 6
local now_ms, viewers = nil, nil
for _ = 1, n do
  local op, key, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'HSET' then
    redis.call('HSET', key, a, b)
    redis.call('EXPIRE', key, ttl)
  elseif op == 'RPUSH' then
    redis.call('RPUSH', key, a)
    redis.call('EXPIRE', key, ttl)
  elseif op == 'SET' then
    redis.call('SET', key, a, 'EX', b == '-' and ttl or tonumber(b))
  elseif op == 'XADD' then
    redis.call('XADD', key, '*', 'id', a, 'job', b)
  elseif op == 'DEL' then
    redis.call('DEL', key)
  elseif op == 'HDEL' then
    redis.call('HDEL', key, a)
  elseif op == 'FINISH' then
    redis.call('XACK', key, a, b)
    redis.call('XDEL', key, b)
    if ARGV[2] ~= '' then
      redis.call('DEL', KEYS[2])
    end
  elseif op == 'EXPIRE' then
    redis.call('EXPIRE', key, ttl)
  elseif op == 'ADOPT' then
    -- Replies that came before the thread was indexed join the history and the queue now.
    local stream, sid = string.match(b, '^(.*):([^:]+)$')
    for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do
      local early = cjson.decode(raw)
      redis.call('RPUSH', a, early.turn)
      redis.call('EXPIRE', a, ttl)
      redis.call('XADD', stream, '*', 'id', early.id, 'job', early.job, 'sid', sid)
    end
    redis.call('DEL', key)
  elseif op == 'ZADD' then
    redis.call('ZADD', key, b, a)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. tostring(tonumber(b) - ttl))
    redis.call('EXPIRE', key, ttl)
  elseif op == 'ZTRIM' then
    redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(a) + 1))
  elseif op == 'VIEWERS' then
    viewers = key
  elseif op == 'DIRTY' then
    if now_ms == nil then
      local t = redis.call('TIME')
      now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local seen = redis.call('ZSCORE', viewers, a)
    if seen and tonumber(seen) >= now_ms - ttl * 1000 then
      redis.call('ZADD', key, 'NX', now_ms, a)
      redis.call('EXPIRE', key, ttl)
    end
  else
    return redis.error_reply('unknown op ' .. op)
  end
  i = i + 4
end
return 1
