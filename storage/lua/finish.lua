-- A job is finished: write the delivery-ledger records it kept for now, acknowledge and delete
-- its stream entry and give its session's lease back (if still ours), in one round trip.
-- Called only after the job's outcome is visible.
-- KEYS[1] jobs stream, KEYS[2] session lock, KEYS[3] the session's delivery ledger (all in the
-- workspace's slot: storage/keys.py)
-- ARGV[1] consumer group, ARGV[2] entry id ('' = records only: the job's last commit already
-- acknowledged it), ARGV[3] fence token ('' = no lease held), ARGV[4] the ledger's ttl (s),
-- ARGV[5..] slot, ts, ... the job posted (bot/jobs/delivery.py keeps them for this script).
-- The first record of a slot wins, as hput.lua's keep-first: a slot already recorded with
-- another ts is returned — two messages were posted for it, and the job deletes its own.
-- Returns the slots whose record was another message's.
local lost = write_records(KEYS[3], ARGV[4], 5)
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
    redis.call('DEL', KEYS[2])
  end
end
return lost
