-- Take a session's lease if free. KEYS[1] lock, KEYS[2] fence counter, KEYS[3] session;
-- ARGV[1] lease (ms), ARGV[2] fence ttl for an existing session (s), ARGV[3] otherwise (s),
-- ARGV[4] the job asking ('' for none: a lease reserved for a job is only that job's).
-- Returns the new fence token, or 0 if the lease is held (take_lease: lease.lua).
return take_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4] or '')
