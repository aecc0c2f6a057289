-- switchboard: the router core's rules on Redis, shared by the scripts below.
-- A second implementation of src/router (window.rs, select.rs, health.rs),
-- held to it by tests/cluster_model.rs: change both together.
--
-- Keys of one model (one hash tag, so Redis Cluster keeps them on one slot):
--   T:en        hash  deployment -> "1" | "0"   (enabled, when set in the cluster)
--   T:cr        hash  deployment -> SWRR credit
--   T:w:<dep>   hash  "h" head second, "t" total, "0".."59" tokens per second
--   T:h:<dep>   hash  "f" consecutive failures, "u" cooldown until (ms),
--                     "c" cause ("r" rate limited, "f" failing), "n" needs a probe,
--                     "q" requests, "x" failures
--   T:p:<dep>   string, with a TTL: a probe is in flight (a crashed instance's
--               probe expires instead of blocking the deployment)
-- Every key expires on its own (KEEP_MS) once nobody writes it.

local WINDOW = 60
local KEEP_MS = 86400000

local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(v) if v then return tonumber(v) end return 0 end

-- window.rs: advance, used, add, settle, fits, time_until_fits
local function advance(w, sec)
  local head = num(redis.call('HGET', w, 'h'))
  if sec <= head then return head end
  local gap = sec - head
  if gap >= WINDOW then
    redis.call('DEL', w)
    redis.call('HSET', w, 'h', sec, 't', 0)
  else
    local total = num(redis.call('HGET', w, 't'))
    for s = head + 1, sec do
      local slot = tostring(s % WINDOW)
      total = total - num(redis.call('HGET', w, slot))
      redis.call('HDEL', w, slot)
    end
    redis.call('HSET', w, 'h', sec, 't', total)
  end
  redis.call('PEXPIRE', w, 120000)
  return sec
end

local function used(w, sec)
  advance(w, sec)
  return num(redis.call('HGET', w, 't'))
end

local function fits(w, sec, need, limit)
  local u = used(w, sec)
  return u == 0 or u + need <= limit
end

local function add(w, sec, tokens)
  local s = advance(w, sec)
  redis.call('HINCRBY', w, tostring(s % WINDOW), tokens)
  redis.call('HINCRBY', w, 't', tokens)
  return s
end

local function settle(w, sec, second, reserved, actual)
  local head = advance(w, sec)
  if second + WINDOW <= head then return end
  local slot = tostring(second % WINDOW)
  local bucket = num(redis.call('HGET', w, slot))
  local removed = math.min(reserved, bucket)
  redis.call('HSET', w, slot, bucket - removed + actual)
  redis.call('HINCRBY', w, 't', actual - removed)
end

local function time_until_fits(w, now, sec, need, limit)
  if fits(w, sec, need, limit) then return 0 end
  local head = num(redis.call('HGET', w, 'h'))
  local oldest = math.max(head - (WINDOW - 1), 0)
  local remaining = num(redis.call('HGET', w, 't'))
  for s = oldest, head do
    remaining = remaining - num(redis.call('HGET', w, tostring(s % WINDOW)))
    if remaining == 0 or remaining + need <= limit then
      return math.max((s + WINDOW) * 1000 - now, 0)
    end
  end
  return math.max((head + WINDOW) * 1000 - now, 0)
end

-- health.rs: blocked, on_pick, record
-- Returns nil, or {cause, remaining_ms} for a cooldown, or {'p', 0} for a probe in flight.
local function blocked(h, p, now)
  local until_ms = num(redis.call('HGET', h, 'u'))
  local cause = redis.call('HGET', h, 'c')
  if cause and until_ms > now then return {cause, until_ms - now} end
  if redis.call('HGET', h, 'n') == '1' and redis.call('EXISTS', p) == 1 then return {'p', 0} end
  return nil
end

local function extend(h, now, wait, cause)
  local until_ms = now + wait
  local current = num(redis.call('HGET', h, 'u'))
  if redis.call('HEXISTS', h, 'u') == 1 and current >= until_ms and current > now then
    return {0}
  end
  redis.call('HSET', h, 'u', until_ms, 'c', cause)
  return {1, cause, wait}
end
