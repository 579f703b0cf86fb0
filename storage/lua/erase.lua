-- Delete a session's data (`/story delete`), only while this job holds its lease (fenced).
-- KEYS[1] lock, KEYS[2] tombstone, KEYS[3] fence counter, KEYS[4..] the session's keys
-- ARGV[1] fence token, ARGV[2] tombstone JSON (who, when, where the card is: no content),
-- ARGV[3] tombstone ttl (s)
-- The tombstone is kept by the first delete (a second one finds it and changes nothing); the
-- fence counter stays as long as the tombstone so a token is never handed out twice.
-- Returns 1 erased, -1 the lease is someone else's (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
for i = 4, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 1
