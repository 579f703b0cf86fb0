-- Shared by acquire.lua and intake.lua (prepended when the scripts are loaded: Redis scripts
-- can't include each other). Takes a session's lease if free — or if it is reserved for this
-- job (``reserved_for``: the eager lane handed it over, see handoff.lua) — and returns the new
-- fence token (a number that only grows), or 0 if the lease is held. The fence counter
-- expires with the session (a forged click for no session leaves nothing lasting).
local function take_lease(lock, fence, session, lease_ms, ttl_existing, ttl_new, reserved_for)
  local holder = redis.call('GET', lock)
  if holder and not (reserved_for ~= '' and holder == 'handoff:' .. reserved_for) then
    return 0
  end
  local token = redis.call('INCR', fence)
  if redis.call('EXISTS', session) == 1 then
    redis.call('EXPIRE', fence, ttl_existing)
  else
    redis.call('EXPIRE', fence, ttl_new)
  end
  redis.call('SET', lock, token, 'PX', lease_ms)
  return token
end
