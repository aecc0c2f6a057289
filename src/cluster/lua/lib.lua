-- switchboard: the router core's rules on Redis, shared by the scripts below.
-- A second implementation of src/router (window.rs, select.rs, health.rs),
-- held to it by tests/cluster_model.rs: change both together.
--
-- Keys of one model (one hash tag, so Redis Cluster keeps them on one slot):
--   T:s         hash, every deployment's small state, one field per fact,
--               named by a letter and the deployment's name:
--                 e enabled ("1" | "0", when set in the cluster), c SWRR credit,
--                 h window head second, t window total,
--                 f consecutive failures, u cooldown until (ms), k its cause
--                 ("r" rate limited, "f" failing), n needs a probe,
--                 q requests, x failures
--   T:w:<dep>   hash "0".."59": tokens per second of the window
--   T:p:<dep>   string, with a TTL: a probe is in flight (a crashed instance's
--               probe expires instead of blocking the deployment)
-- Every key expires on its own once nobody writes it.
--
-- Every script takes KEYS = T:s, then per deployment i T:w (KEYS[2i]) and
-- T:p (KEYS[2i+1]); ARGV = now_ms ('' = the server's clock), n, the n names,
-- then its own. The hash is read in one HMGET and written in one HSET at the
-- end: a Redis call from Lua costs about a microsecond, and a pick is on
-- every request's path.

local WINDOW = 60
local KEEP_MS = 86400000
local WINDOW_KEEP_MS = 120000

local S = KEYS[1]
local N = tonumber(ARGV[2])
local NAMES = {}
for i = 1, N do NAMES[i] = ARGV[2 + i] end
-- Where the script's own arguments start.
local A = 3 + N

local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(v) if v then return tonumber(v) end return 0 end

-- T:s, read once and written once.
local cache, dirty, moved = {}, {}, {}
local function prefetch(kinds)
  local fields = {}
  for i = 1, N do
    for k = 1, #kinds do fields[#fields + 1] = string.sub(kinds, k, k) .. NAMES[i] end
  end
  if #fields == 0 then return end
  local values = redis.call('HMGET', S, unpack(fields))
  for j, f in ipairs(fields) do cache[f] = values[j] end
end
local function get(kind, i)
  local f = kind .. NAMES[i]
  local v = cache[f]
  if v == nil then
    v = redis.call('HGET', S, f)
    cache[f] = v
  end
  return v
end
-- false deletes the field.
local function put(kind, i, v)
  local f = kind .. NAMES[i]
  cache[f] = v
  dirty[f] = v
end
local function flush()
  local set, del = {}, {}
  for f, v in pairs(dirty) do
    if v == false then del[#del + 1] = f else set[#set + 1] = f; set[#set + 1] = v end
  end
  if #set > 0 then redis.call('HSET', S, unpack(set)) end
  if #del > 0 then redis.call('HDEL', S, unpack(del)) end
  if #set > 0 or #del > 0 then redis.call('PEXPIRE', S, KEEP_MS) end
  for i in pairs(moved) do redis.call('PEXPIRE', KEYS[2 * i], WINDOW_KEEP_MS) end
end
local function wkey(i) return KEYS[2 * i] end
local function pkey(i) return KEYS[2 * i + 1] end

-- window.rs: advance, used, add, settle, fits, time_until_fits
local function advance(i, sec)
  local head = num(get('h', i))
  if sec <= head then return head end
  local gap = sec - head
  local total = 0
  if gap >= WINDOW then
    redis.call('DEL', wkey(i))
  else
    total = num(get('t', i))
    local slots = {}
    for s = head + 1, sec do slots[#slots + 1] = tostring(s % WINDOW) end
    local gone = redis.call('HMGET', wkey(i), unpack(slots))
    for _, v in ipairs(gone) do total = total - num(v) end
    redis.call('HDEL', wkey(i), unpack(slots))
  end
  put('h', i, sec)
  put('t', i, total)
  moved[i] = true
  return sec
end

local function used(i, sec)
  advance(i, sec)
  return num(get('t', i))
end

local function fits(i, sec, need, limit)
  local u = used(i, sec)
  return u == 0 or u + need <= limit
end

local function add(i, sec, tokens)
  local s = advance(i, sec)
  redis.call('HINCRBY', wkey(i), tostring(s % WINDOW), tokens)
  put('t', i, num(get('t', i)) + tokens)
  moved[i] = true
  return s
end

local function settle(i, sec, second, reserved, actual)
  local head = advance(i, sec)
  if second + WINDOW <= head then return end
  local slot = tostring(second % WINDOW)
  local bucket = num(redis.call('HGET', wkey(i), slot))
  local removed = math.min(reserved, bucket)
  redis.call('HSET', wkey(i), slot, bucket - removed + actual)
  put('t', i, num(get('t', i)) + actual - removed)
  moved[i] = true
end

local function time_until_fits(i, now, sec, need, limit)
  if fits(i, sec, need, limit) then return 0 end
  local head = num(get('h', i))
  local oldest = math.max(head - (WINDOW - 1), 0)
  local remaining = num(get('t', i))
  local slots = {}
  for s = oldest, head do slots[#slots + 1] = tostring(s % WINDOW) end
  local tokens = redis.call('HMGET', wkey(i), unpack(slots))
  for j, s in ipairs(slots) do
    remaining = remaining - num(tokens[j])
    if remaining == 0 or remaining + need <= limit then
      return math.max((oldest + j - 1 + WINDOW) * 1000 - now, 0)
    end
  end
  return math.max((head + WINDOW) * 1000 - now, 0)
end

-- health.rs: blocked, extend, record
-- A probe key exists only while 'n' is "1" (it is set by a pick when it is,
-- and deleted whenever 'n' is cleared), so only then is it looked at.
-- Returns nil, or {cause, remaining_ms} for a cooldown, or {'p', 0} for a probe in flight.
local function blocked(i, now)
  local until_ms = num(get('u', i))
  local cause = get('k', i)
  if cause and until_ms > now then return {cause, until_ms - now} end
  if get('n', i) == '1' and redis.call('EXISTS', pkey(i)) == 1 then return {'p', 0} end
  return nil
end

local function extend(i, now, wait, cause)
  local until_ms = now + wait
  local current = get('u', i)
  if current and tonumber(current) >= until_ms and tonumber(current) > now then
    return {0}
  end
  put('u', i, until_ms)
  put('k', i, cause)
  return {1, cause, wait}
end

-- verdict: 'a' answered, 'r' rate limited, 'f' failed, 'x' no verdict.
-- Returns {0}, {1, cause, for_ms} (a cooldown began or grew) or {2} (recovered).
local function record(i, now, verdict, hint, threshold, cooldown, max_cooldown, rate_cooldown)
  threshold = math.max(threshold, 1)
  local probing = get('n', i) == '1'
  if verdict == 'a' then
    local cause = get('k', i)
    local was_down = probing or cause == 'f'
    if num(get('f', i)) ~= 0 then put('f', i, 0) end
    if probing then
      put('n', i, 0)
      redis.call('DEL', pkey(i))
    end
    -- A rate limit is not lifted by an answer to an older request.
    if cause == 'f' then
      put('u', i, false)
      put('k', i, false)
    end
    if was_down then return {2} end
    return {0}
  elseif verdict == 'r' then
    if probing then redis.call('DEL', pkey(i)) end
    local wait = hint
    if wait < 0 then wait = rate_cooldown end
    return extend(i, now, wait, 'r')
  elseif verdict == 'f' then
    local probe_in_flight = probing and redis.call('EXISTS', pkey(i)) == 1
    put('x', i, num(get('x', i)) + 1)
    -- Requests in flight when a failure cooldown began say nothing new.
    local b = blocked(i, now)
    if b ~= nil and b[1] == 'f' then return {0} end
    local fails = num(get('f', i)) + 1
    put('f', i, fails)
    if probing then redis.call('DEL', pkey(i)) end
    if fails < threshold and not probe_in_flight then return {0} end
    put('n', i, 1)
    local extra = math.min(math.max(fails - threshold, 0), 30)
    local wait = math.min(cooldown * (2 ^ extra), max_cooldown)
    return extend(i, now, wait, 'f')
  else
    if probing then redis.call('DEL', pkey(i)) end
    return {0}
  end
end

-- Settles and verdicts from ARGV[a] to the end (the format is apply.lua's);
-- per op, 3 values appended to out.
local function apply_ops(a, now, sec, out)
  while a <= #ARGV do
    local kind, i = ARGV[a], tonumber(ARGV[a + 1])
    local r = {0}
    if kind == 's' then
      settle(i, sec, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
      a = a + 5
    else
      r = record(i, now, ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]),
        tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]))
      a = a + 8
    end
    out[#out + 1] = r[1]
    out[#out + 1] = r[2] or ''
    out[#out + 1] = r[3] or 0
  end
end
