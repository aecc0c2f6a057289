-- switchboard: the router core's rules on Redis, shared by the operations
-- below it (src/cluster/functions.rs makes them one library of Redis
-- functions, or on Redis < 7 one script each with this file at its top).
-- A second implementation of src/router (window.rs, limits.rs, select.rs,
-- health.rs), held to it by tests/cluster_model.rs: change both together.
--
-- Keys of one model (one hash tag, so Redis Cluster keeps them on one slot):
--   T:d         string, every deployment's small state packed with
--               cmsgpack: a map from the deployment's name to a map of
--               its facts, each named by a letter:
--                 e enabled ("1" | "0", when set in the cluster), c SWRR credit,
--                 h windows' head second, t tokens window total,
--                 r / i / o requests / input / output window totals (begun
--                 by a pick of a deployment with that limit, gone after a
--                 quiet minute: the window exists while its total does),
--                 f consecutive failures, u cooldown until (ms), k its cause
--                 ("r" rate limited, "f" failing), n needs a probe ("1" | "0"),
--                 q requests, x failures
--   T:t:<dep>   hash, the windows' buckets, one per second: tokens "0".."59",
--               requests "r0".."r59", input "i0".., output "o0"..; the
--               windows of a deployment share their head
--   T:p:<dep>   string, with a TTL: a probe is in flight (a crashed instance's
--               probe expires instead of blocking the deployment)
--   T:l:<dep>   sorted set, the leases of requests in flight (max_in_flight):
--               "<instance>:<n>" scored by its expiry (ms, the script's
--               clock); only the live ones count, and a pick that takes a
--               lease removes the expired ones
--   T:q         string, with a TTL: some instance has requests of the model
--               waiting for room; its value is the channel to tell them on
--               when room frees (see src/cluster/freed.rs)
-- Every key expires on its own once nobody writes it.
--
-- Every operation takes KEYS = T:d, then per deployment i T:t (KEYS[3i-1]),
-- T:p (KEYS[3i]) and T:l (KEYS[3i+1]); ARGV = now_ms ('' = the server's
-- clock), n, the n names, then its own; pick and apply add T:q as their
-- last key.
--
-- What a call costs is mostly its calls into Redis and the strings it
-- makes (on the bench box a redis.call is 0.7-1.7 us, an HMGET of 20
-- fields of a small hash 7 us): T:d is read with one GET and one C
-- unpack the first time a fact is wanted and written with one SET at the
-- end, and the buckets a call adds to are written at its end, one HINCRBY
-- per bucket however many requests of the call counted in it.
--
-- This file's top level runs once, when Redis loads the library (it may
-- not call Redis); what is per call is set by begin(KEYS, ARGV), the
-- first thing every operation does.

local WINDOW = 60
local KEEP_MS = 86400000
local WINDOW_KEEP_MS = 120000

-- The call's: T:d, the number of deployments and their names, and where
-- the operation's own arguments start.
local KEYS, ARGV, S, N, NAMES, A
-- T:d unpacked (nil until a fact is wanted), each deployment's map in it,
-- and whether it changed; the buckets read (base) and added to by this
-- call (pend, written by flush), per deployment; the deployments whose
-- windows moved; the lease keys written, with how long they are kept;
-- requests counted in a slice of each deployment this second (see
-- within); live leases counted (see in_flight); whether room may have
-- freed (see tell_freed).
local all, of, dirty, base, pend, moved, leased, slice_used, held, freed

local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  S = KEYS[1]
  N = tonumber(ARGV[2])
  NAMES = {}
  for i = 1, N do NAMES[i] = ARGV[2 + i] end
  A = 3 + N
  all, of, dirty = nil, {}, false
  base, pend, moved, leased, slice_used, held, freed = {}, {}, {}, {}, {}, {}, false
end

local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(v) if v then return tonumber(v) end return 0 end

-- T:d, read once per call.
local function load()
  local packed = redis.call('GET', S)
  all = packed and cmsgpack.unpack(packed) or {}
  for i = 1, N do
    local facts = all[NAMES[i]]
    if type(facts) ~= 'table' then
      facts = {}
      all[NAMES[i]] = facts
    end
    of[i] = facts
  end
end
local function get(kind, i)
  if all == nil then load() end
  local v = of[i][kind]
  if v == nil then return false end
  return v
end
-- A deployment's facts, to read and write in place on the paths every
-- request takes (set dirty when writing): a call through get and put costs
-- more than the lookup itself.
local function facts(i)
  if all == nil then load() end
  return of[i]
end
-- false deletes the fact.
local function put(kind, i, v)
  if all == nil then load() end
  if v == false then v = nil end
  of[i][kind] = v
  dirty = true
end

-- A bucket as this call sees it: Redis's count and what the call added.
local function bucket(i, slot)
  local b = base[i]
  if b == nil then b = {}; base[i] = b end
  local v = b[slot]
  if v == nil then
    v = num(redis.call('HGET', KEYS[3 * i - 1], slot))
    b[slot] = v
  end
  local p = pend[i]
  if p ~= nil and p[slot] ~= nil then v = v + p[slot] end
  return v
end
local function bump(i, slot, n)
  local p = pend[i]
  if p == nil then p = {}; pend[i] = p end
  p[slot] = (p[slot] or 0) + n
end

local function flush()
  if dirty then redis.call('SET', S, cmsgpack.pack(all), 'PX', KEEP_MS) end
  -- A deployment's buckets are kept while it counts in them: their
  -- lifetime is renewed when its windows move (once a second at most) and
  -- when a bucket is begun (its count is then what was added: the key may
  -- have just been made), not by every call.
  for i, slots in pairs(pend) do
    for slot, n in pairs(slots) do
      if n ~= 0 and redis.call('HINCRBY', KEYS[3 * i - 1], slot, n) == n then moved[i] = true end
    end
  end
  for i in pairs(moved) do redis.call('PEXPIRE', KEYS[3 * i - 1], WINDOW_KEEP_MS) end
  for i, keep in pairs(leased) do redis.call('PEXPIRE', KEYS[3 * i + 1], keep) end
end
local function wkey(i) return KEYS[3 * i - 1] end
local function pkey(i) return KEYS[3 * i] end
local function lkey(i) return KEYS[3 * i + 1] end

-- window.rs: advance, used, add, settle, fits, used_within,
-- time_until_fits_within; for the window named by w: '' tokens, 'r'
-- requests, 'i' input, 'o' output (limits.rs's Meter holds the four).
local EXTRA = {'r', 'i', 'o'}
local TOTAL = {[''] = 't', r = 'r', i = 'i', o = 'o'}
-- Moves every window of the deployment forward to sec.
local function advance(i, sec)
  local head = num(get('h', i))
  if sec <= head then return head end
  local windows = {''}
  for _, w in ipairs(EXTRA) do
    if get(w, i) then windows[#windows + 1] = w end
  end
  local gap = sec - head
  -- Nothing of this call is in the buckets that leave (its clock is one
  -- second: a deployment's windows move at most once per call, before it
  -- counts anything), but what it read of them is forgotten.
  base[i], pend[i] = nil, nil
  if gap >= WINDOW then
    redis.call('DEL', wkey(i))
    put('t', i, 0)
    -- Empty windows beyond tokens go (a pick begins them again while the
    -- deployment has their limit): one whose limit went away lingers no
    -- longer than the deployment's first quiet minute.
    for k = 2, #windows do put(TOTAL[windows[k]], i, false) end
  else
    local slots = {}
    for _, w in ipairs(windows) do
      for s = head + 1, sec do slots[#slots + 1] = w .. (s % WINDOW) end
    end
    local gone = redis.call('HMGET', wkey(i), unpack(slots))
    for k, w in ipairs(windows) do
      local total = num(get(TOTAL[w], i))
      for j = (k - 1) * gap + 1, k * gap do total = total - num(gone[j]) end
      put(TOTAL[w], i, total)
    end
    redis.call('HDEL', wkey(i), unpack(slots))
  end
  put('h', i, sec)
  moved[i] = true
  return sec
end

-- The buckets named by slots, as this call sees them (see bucket).
local function counts_of(i, slots)
  local b = base[i]
  if b == nil then b = {}; base[i] = b end
  local missing = {}
  for _, slot in ipairs(slots) do
    if b[slot] == nil then missing[#missing + 1] = slot end
  end
  if #missing > 0 then
    local read = redis.call('HMGET', wkey(i), unpack(missing))
    for j, slot in ipairs(missing) do b[slot] = num(read[j]) end
  end
  local p = pend[i] or {}
  local counts = {}
  for j, slot in ipairs(slots) do counts[j] = b[slot] + (p[slot] or 0) end
  return counts
end

local function used(i, w, sec)
  local f = facts(i)
  if num(f.h) < sec then advance(i, sec) end
  return num(f[TOTAL[w]])
end

local function fits(i, w, sec, need, limit)
  local u = used(i, w, sec)
  return u == 0 or u + need <= limit
end

-- Counts n now; a window beyond tokens begins with its first count.
local function add(i, w, sec, n)
  local s = advance(i, sec)
  bump(i, w .. (s % WINDOW), n)
  local f, total = facts(i), TOTAL[w]
  f[total] = num(f[total]) + n
  dirty = true
  if w == 'r' and slice_used[i] then slice_used[i] = slice_used[i] + n end
  return s
end

local function settle(i, w, sec, second, reserved, actual)
  local head = advance(i, sec)
  if second + WINDOW <= head then return end
  -- A window that is not kept (its limit went away) has nothing to fix.
  if w ~= '' and not get(TOTAL[w], i) then return end
  local slot = w .. (second % WINDOW)
  local removed = math.min(reserved, bucket(i, slot))
  bump(i, slot, actual - removed)
  put(TOTAL[w], i, num(get(TOTAL[w], i)) + actual - removed)
  if w == 'r' then slice_used[i] = nil end
end

-- Counted in the last span seconds (at most 60), this one included.
local function used_within(i, w, sec, span)
  local head = advance(i, sec)
  if span >= WINDOW then return num(get(TOTAL[w], i)) end
  if not get(TOTAL[w], i) then return 0 end
  local slots = {}
  for s = math.max(head - span + 1, 0), head do slots[#slots + 1] = w .. (s % WINDOW) end
  local sum = 0
  for _, v in ipairs(counts_of(i, slots)) do sum = sum + v end
  return sum
end

-- The requests in the deployment's last slice of span seconds, read once
-- per call (picks in a row add to it).
local function within(i, sec, span)
  local u = slice_used[i]
  if u == nil then
    u = used_within(i, 'r', sec, span)
    slice_used[i] = u
  end
  return u
end

-- ms until need more fit under limit in every span-second stretch ending
-- then (0 when they fit now).
local function time_until_fits(i, w, now, sec, need, limit, span)
  span = math.max(1, math.min(span, WINDOW))
  local u = used_within(i, w, sec, span)
  if u == 0 or u + need <= limit then return 0 end
  local head = num(get('h', i))
  local oldest = math.max(head - (span - 1), 0)
  local remaining = u
  local slots = {}
  for s = oldest, head do slots[#slots + 1] = w .. (s % WINDOW) end
  local counts = counts_of(i, slots)
  for j = 1, #slots do
    remaining = remaining - counts[j]
    if remaining == 0 or remaining + need <= limit then
      return math.max((oldest + j - 1 + span) * 1000 - now, 0)
    end
  end
  return math.max((head + span) * 1000 - now, 0)
end

-- Leases of the requests in flight: the ones not expired, counted once
-- per call (picks in a row add to it; a release counts afresh).
local function in_flight(i, now)
  local n = held[i]
  if n == nil then
    n = redis.call('ZCOUNT', lkey(i), '(' .. now, '+inf')
    held[i] = n
  end
  return n
end

-- The key outlives its leases whatever the TTL an instance gives them.
local function lease_keep(ttl) return math.max(ttl, WINDOW_KEEP_MS) end

-- Takes a lease; the expired ones of the deployment go first.
local function lease(i, now, member, ttl)
  local n = in_flight(i, now)
  redis.call('ZREMRANGEBYSCORE', lkey(i), '-inf', now)
  redis.call('ZADD', lkey(i), now + ttl, member)
  leased[i] = lease_keep(ttl)
  held[i] = n + 1
end

-- Whether it was there (an expired lease may have been cleaned already).
local function release(i, member)
  held[i] = nil
  return redis.call('ZREM', lkey(i), member) == 1
end

-- Waiting for room across instances (src/cluster/freed.rs). An op that
-- may let a waiting request in (a lease released, tokens given back by a
-- settle or an undo, a deployment recovered) sets freed; the operation
-- then tells the instances waiting for the model, if any marked it in T:q.
local function qkey() return KEYS[#KEYS] end

-- The model is waited for (by a pick that found no room for a request
-- that will wait) for at least ttl ms more, told on channel.
local function mark_waiting(channel, ttl)
  if redis.call('PTTL', qkey()) < ttl then
    redis.call('SET', qkey(), channel, 'PX', ttl)
  end
end

-- One message per call, only when room may have freed and someone
-- waits: "<owner> <the model's hash tag>" (owner: the instance whose
-- call it was, which knows already).
local function tell_freed(owner)
  if not freed then return end
  local channel = redis.call('GET', qkey())
  if channel then
    redis.call('PUBLISH', channel, owner .. ' ' .. string.sub(S, 1, -3))
  end
end

-- Which windows beyond tokens a pick counted in (a mask: 1 requests,
-- 2 input, 4 output).
local function counted(mask, bit) return math.floor(mask / bit) % 2 == 1 end

-- health.rs: blocked, extend, record
-- A probe key exists only while 'n' is "1" (it is set by a pick when it is,
-- and deleted whenever 'n' is cleared), so only then is it looked at.
-- Returns nil, or {cause, remaining_ms} for a cooldown, or {'p', 0} for a probe in flight.
local function blocked(i, now)
  local f = facts(i)
  local cause = f.k
  if cause then
    local until_ms = num(f.u)
    if until_ms > now then return {cause, until_ms - now} end
  end
  if f.n == '1' and redis.call('EXISTS', pkey(i)) == 1 then return {'p', 0} end
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
      put('n', i, '0')
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
    put('n', i, '1')
    local extra = math.min(math.max(fails - threshold, 0), 30)
    local wait = math.min(cooldown * (2 ^ extra), max_cooldown)
    return extend(i, now, wait, 'f')
  else
    if probing then redis.call('DEL', pkey(i)) end
    return {0}
  end
end

-- Settles, undos, releases and verdicts from ARGV[a] to the end (the
-- format is apply.lua's); per op, 3 values appended to out.
local function apply_ops(a, now, sec, out)
  while a <= #ARGV do
    local kind, i = ARGV[a], tonumber(ARGV[a + 1])
    local r = {0}
    if kind == 's' or kind == 'u' then
      -- limits.rs's Meter::settle: tokens, then input and output where
      -- counted; Meter::undo: all of them to nothing, the request too.
      local second, res_in, res_out = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
      local act_in, act_out, mask = 0, 0, nil
      if kind == 's' then
        act_in, act_out, mask = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
        a = a + 8
      else
        mask = tonumber(ARGV[a + 5])
        a = a + 6
      end
      if kind == 'u' or act_in < res_in or act_out < res_out then freed = true end
      settle(i, '', sec, second, res_in + res_out, act_in + act_out)
      if counted(mask, 2) then settle(i, 'i', sec, second, res_in, act_in) end
      if counted(mask, 4) then settle(i, 'o', sec, second, res_out, act_out) end
      if kind == 'u' and counted(mask, 1) then settle(i, 'r', sec, second, 1, 0) end
    elseif kind == 'l' then
      if release(i, ARGV[a + 2]) then freed = true end
      a = a + 3
    else
      r = record(i, now, ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]),
        tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]))
      if r[1] == 2 then freed = true end
      a = a + 8
    end
    out[#out + 1] = r[1]
    out[#out + 1] = r[2] or ''
    out[#out + 1] = r[3] or 0
  end
end
