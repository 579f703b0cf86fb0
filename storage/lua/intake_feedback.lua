-- Durable intake of a thread reply: only for threads we own; record the turn and enqueue.
-- KEYS[1] thread index key, KEYS[2] dedupe key, KEYS[3] jobs stream, KEYS[4] early-replies list
-- ARGV[1] job id, ARGV[2] job payload (JSON, session id filled in by the worker from 'sid'),
-- ARGV[3] turn (JSON), ARGV[4] dedupe ttl (s), ARGV[5] session key prefix ("sl:t:T:s:"),
-- ARGV[6] session ttl (s), ARGV[7] '1' if the thread's parent is a message of ours,
-- ARGV[8] the answer's stream mark (bot/pipeline/slots.py): set in the session's delivery
-- ledger here, not by the job before it starts its stream — one round trip less per reply. It
-- says a stream may have been started for the slot: a retried answer that finds no ts looks in
-- the thread for one (a lookup that finds nothing if the first attempt died before streaming).
-- A reply kept for a thread not yet indexed gets none: its job sets it (streams.py).
-- Returns {1, sid} enqueued, {2, ''} kept for a thread about to be indexed,
-- {0, ''} not a session thread, {-1, sid} duplicate delivery.
local sid = redis.call('GET', KEYS[1])
if not sid then
  if ARGV[7] ~= '1' then
    return {0, ''}
  end
  -- Our card is posted but its thread not yet indexed: keep the reply for the session to adopt.
  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[4]) then
    return {-1, ''}
  end
  redis.call('RPUSH', KEYS[4], cjson.encode({id = ARGV[1], job = ARGV[2], turn = ARGV[3]}))
  redis.call('EXPIRE', KEYS[4], 3600)
  return {2, ''}
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[4]) then
  return {-1, sid}
end
local hist = ARGV[5] .. sid .. ':hist'
redis.call('RPUSH', hist, ARGV[3])
redis.call('EXPIRE', hist, ARGV[6])
local ledger = ARGV[5] .. sid .. ':msgs'
redis.call('HSET', ledger, ARGV[8], '1')
redis.call('EXPIRE', ledger, ARGV[6])
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1], 'job', ARGV[2], 'sid', sid)
return {1, sid}
