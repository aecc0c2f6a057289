-- record: health.rs's Health::record (and the failure counter of Pool::record).
-- KEYS: T:h:<dep>, T:p:<dep>
-- ARGV: now_ms, verdict ('a' answered, 'r' rate limited, 'f' failed, 'x' no verdict),
--       hint_ms (-1: none), failure_threshold, cooldown_ms, max_cooldown_ms, rate_limit_cooldown_ms
-- Returns {0}, {1, cause, for_ms} (a cooldown began or grew) or {2} (recovered).
local now = now_ms(ARGV[1])
local h, p = KEYS[1], KEYS[2]
local verdict = ARGV[2]
local hint = tonumber(ARGV[3])
local threshold = math.max(tonumber(ARGV[4]), 1)
local cooldown, max_cooldown, rate_cooldown = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('PEXPIRE', h, KEEP_MS)
local probe_in_flight = redis.call('EXISTS', p) == 1
if verdict == 'a' then
  local cause = redis.call('HGET', h, 'c')
  local was_down = redis.call('HGET', h, 'n') == '1' or cause == 'f'
  redis.call('HSET', h, 'f', 0, 'n', 0)
  redis.call('DEL', p)
  -- A rate limit is not lifted by an answer to an older request.
  if cause == 'f' then redis.call('HDEL', h, 'u', 'c') end
  if was_down then return {2} end
  return {0}
elseif verdict == 'r' then
  redis.call('DEL', p)
  local wait = hint
  if wait < 0 then wait = rate_cooldown end
  return extend(h, now, wait, 'r')
elseif verdict == 'f' then
  redis.call('HINCRBY', h, 'x', 1)
  -- Requests in flight when a failure cooldown began say nothing new.
  local b = blocked(h, p, now)
  if b ~= nil and b[1] == 'f' then return {0} end
  local fails = redis.call('HINCRBY', h, 'f', 1)
  redis.call('DEL', p)
  if fails < threshold and not probe_in_flight then return {0} end
  redis.call('HSET', h, 'n', 1)
  local extra = math.min(math.max(fails - threshold, 0), 30)
  local wait = math.min(cooldown * (2 ^ extra), max_cooldown)
  return extend(h, now, wait, 'f')
else
  redis.call('DEL', p)
  return {0}
end
