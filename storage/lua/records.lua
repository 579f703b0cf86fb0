-- Shared by handoff.lua, finish.lua and hput.lua (prepended when the scripts are loaded).
-- Writes the delivery-ledger records a job kept back — ARGV[first..] slot, ts, ... — into the
-- session's ledger, the first record of a slot winning (as hput.lua's keep-first), and gives
-- the ledger the session's ttl. Returns the slots whose record was another message's (two
-- messages were posted for one slot: the caller deletes its own).
local function write_records(ledger, ttl, first)
  local lost = {}
  for i = first, #ARGV, 2 do
    redis.call('HSETNX', ledger, ARGV[i], ARGV[i + 1])
    if redis.call('HGET', ledger, ARGV[i]) ~= ARGV[i + 1] then
      lost[#lost + 1] = ARGV[i]
    end
  end
  if #ARGV >= first then
    redis.call('EXPIRE', ledger, ttl)
  end
  return lost
end
