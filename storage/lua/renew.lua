-- Extend a lease we still hold. KEYS[1] lock; ARGV[1] token, ARGV[2] lease (ms). 1 = renewed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
