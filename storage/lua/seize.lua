-- Take a session's lease whoever holds it: `/story delete` must not wait for a render that holds
-- the session for minutes. The holder is fenced out — its next renew, commit or fenced write
-- finds another token and it stops (paid work it already started is not undone).
-- KEYS[1] lock, KEYS[2] fence counter, KEYS[3] session; ARGV[1] lease (ms), ARGV[2] fence ttl
-- for an existing session (s), ARGV[3] otherwise (s). Returns the new fence token.
redis.call('DEL', KEYS[1])
return take_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], '')
