-- A job is finished: acknowledge and delete its stream entry and give its session's lease back
-- (if still ours), in one round trip. Called only after the job's outcome is visible.
-- KEYS[1] jobs stream, KEYS[2] session lock (the same slot: storage/keys.py)
-- ARGV[1] consumer group, ARGV[2] entry id, ARGV[3] fence token ('' = no lease held)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
