-- pick: mod.rs's Pool::pick and why_unavailable, atomically for the cluster.
-- KEYS: T:en, T:cr, then per deployment i: T:w:<dep>, T:h:<dep>, T:p:<dep>
-- ARGV: now_ms ('' = the server's clock), estimate, n, probe_ttl_ms, then per
--       deployment: name, weight, limit (0 = none), flags (1 tried, 2 enabled in the config)
-- Returns {1, index (1-based), second, probe} or {0, kind, retry_ms} with kind
-- 'none' (none enabled), 'exhausted' (all tried), 'rate', 'fail'.
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local estimate = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local probe_ttl = tonumber(ARGV[4])
local deps = {}
for i = 1, n do
  local a = 4 + (i - 1) * 4
  local flags = tonumber(ARGV[a + 4])
  local enabled = redis.call('HGET', KEYS[1], ARGV[a + 1])
  if enabled == false then enabled = (math.floor(flags / 2) % 2 == 1) else enabled = (enabled == '1') end
  deps[i] = {
    name = ARGV[a + 1], weight = tonumber(ARGV[a + 2]), limit = tonumber(ARGV[a + 3]),
    tried = (flags % 2 == 1), enabled = enabled,
    w = KEYS[3 + (i - 1) * 3], h = KEYS[4 + (i - 1) * 3], p = KEYS[5 + (i - 1) * 3],
  }
end
-- select.rs: every open deployment gains its weight; the richest wins and
-- pays back what all of them gained.
local total, best, best_credit = 0, nil, nil
for i, d in ipairs(deps) do
  local open = d.enabled and not d.tried and blocked(d.h, d.p, now) == nil
    and (d.limit == 0 or fits(d.w, sec, estimate, d.limit))
  if open then
    local credit = num(redis.call('HGET', KEYS[2], d.name)) + d.weight
    redis.call('HSET', KEYS[2], d.name, credit)
    total = total + d.weight
    if best == nil or credit > best_credit then best, best_credit = i, credit end
  end
end
redis.call('PEXPIRE', KEYS[2], KEEP_MS)
if best ~= nil then
  local d = deps[best]
  redis.call('HSET', KEYS[2], d.name, best_credit - total)
  local probe = 0
  if redis.call('HGET', d.h, 'n') == '1' then
    redis.call('SET', d.p, '1', 'PX', probe_ttl)
    probe = 1
  end
  redis.call('HINCRBY', d.h, 'q', 1)
  redis.call('PEXPIRE', d.h, KEEP_MS)
  local second = add(d.w, sec, estimate)
  return {1, best, second, probe}
end
local any_enabled, any_limited, soonest = false, false, nil
for _, d in ipairs(deps) do
  if d.enabled then
    any_enabled = true
    if not d.tried then
      local wait
      local b = blocked(d.h, d.p, now)
      if b ~= nil and b[1] == 'p' then
        wait = 1000
      elseif b ~= nil then
        if b[1] == 'r' then any_limited = true end
        wait = b[2]
      elseif d.limit > 0 then
        any_limited = true
        wait = time_until_fits(d.w, now, sec, estimate, d.limit)
      else
        wait = 0
      end
      if soonest == nil or wait < soonest then soonest = wait end
    end
  end
end
if not any_enabled then return {0, 'none', 0} end
if soonest == nil then return {0, 'exhausted', 0} end
if any_limited then return {0, 'rate', soonest} end
return {0, 'fail', soonest}
