-- Write one field of a hash that lives as long as its session (or job), in one round trip:
-- the delivery ledger's slots and pending uploads, a job's cached LLM answers.
-- KEYS[1] hash; ARGV[1] field, ARGV[2] value, ARGV[3] ttl (s), ARGV[4] '1': keep a value
-- already there (the first writer wins), else overwrite.
-- With KEYS[2], the session's delivery ledger: also the records the job kept for its next
-- write (a thread reply's streamed answer, written with its cached LLM answer):
-- ARGV[5] the ledger's ttl (s), ARGV[6..] slot, ts, ...; the first record of a slot wins.
-- Returns {the field's value after the write (the winner's, with ARGV[4] = '1'), the slots
-- whose record was another message's ...}.
if ARGV[4] == '1' then
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local out = {redis.call('HGET', KEYS[1], ARGV[1])}
if #KEYS > 1 then
  for _, slot in ipairs(write_records(KEYS[2], ARGV[5], 6)) do
    out[#out + 1] = slot
  end
end
return out
