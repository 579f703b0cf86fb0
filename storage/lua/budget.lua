-- Take one token from every bucket of a Slack call (Slack's rate limits as one shared budget).
-- KEYS[i]  a token bucket hash {tokens, at}: the channel's (chat.postMessage and chat.update)
--          and, for chat.update, the workspace's; all under the workspace's hash tag.
-- ARGV[1]  "1": a best-effort call (a progress edit), ARGV[2] max wait (ms), ARGV[3] ttl (ms),
-- then per key: rate (tokens/s), burst (capacity), reserve (kept for results).
-- A progress edit takes a token only where every bucket holds more than 1 + its reserve, else
-- it takes nothing and is skipped (-1). A result always takes its token, and may drive a bucket
-- into debt down to max-wait's worth: it is told how long to wait (ms) for its turn, so results
-- queue in arrival order with one round trip each. A result past that debt takes nothing and
-- is told to wait the max (Slack's own 429 handling is the last guard).
-- Time is Redis's clock (TIME), the same for every replica.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best_effort = ARGV[1] == '1'
local max_wait = tonumber(ARGV[2])
local level = {}
local stamp = {}
local wait = 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[4 + (i - 1) * 3]) / 1000
  local burst = tonumber(ARGV[5 + (i - 1) * 3])
  local reserve = tonumber(ARGV[6 + (i - 1) * 3])
  local s = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(s[1]) or burst
  local at = tonumber(s[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * rate)
    at = now
  end
  if best_effort then
    if tokens < 1 + reserve then
      return -1
    end
  else
    if tokens - 1 < -rate * max_wait then
      return max_wait
    end
    if tokens < 1 then
      wait = math.max(wait, math.ceil((1 - tokens) / rate))
    end
  end
  level[i] = tokens - 1
  stamp[i] = at
end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'tokens', tostring(level[i]), 'at', stamp[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
return wait
