-- pick: mod.rs's Pool::pick and why_unavailable, atomically for the cluster,
-- for one request or for several in a row (the picks of concurrent requests
-- of one model, batched: the same decisions as one script call each).
-- ARGV (after the names): probe_ttl_ms, per deployment weight, limit (0 =
--   none), enabled in the config (0/1); then k, and per request: estimate,
--   marks (one character per deployment: 0 open, 1 tried, 2 known not to
--   offer the endpoint: tried last); then, to the end, settles and verdicts
--   of earlier requests in apply.lua's format, applied first (they ride
--   along instead of costing a call of their own).
-- Returns per request 4 values: 1, index (1-based), second, probe; or 0,
-- kind, retry_ms, 0 with kind 'none' (none enabled), 'exhausted' (all
-- tried), 'rate', 'fail'; then per op apply.lua's 3 values.
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local probe_ttl = tonumber(ARGV[A])
prefetch('echtuknfqx')
local deps = {}
for i = 1, N do
  local a = A + 1 + (i - 1) * 3
  local enabled = get('e', i)
  if enabled == false then enabled = (ARGV[a + 2] == '1') else enabled = (enabled == '1') end
  deps[i] = {weight = tonumber(ARGV[a]), limit = tonumber(ARGV[a + 1]), enabled = enabled}
end

local function try(estimate, marks, avoiding)
  local tried = {}
  for i = 1, N do
    local m = string.byte(marks, i)
    tried[i] = m == 49 or (avoiding and m == 50)
  end
  -- select.rs: every open deployment gains its weight; the richest wins and
  -- pays back what all of them gained.
  local total, best, best_credit = 0, nil, nil
  for i, d in ipairs(deps) do
    local open = d.enabled and not tried[i] and blocked(i, now) == nil
      and (d.limit == 0 or fits(i, sec, estimate, d.limit))
    if open then
      local credit = num(get('c', i)) + d.weight
      put('c', i, credit)
      total = total + d.weight
      if best == nil or credit > best_credit then best, best_credit = i, credit end
    end
  end
  if best ~= nil then
    put('c', best, best_credit - total)
    local probe = 0
    if get('n', best) == '1' then
      redis.call('SET', pkey(best), '1', 'PX', probe_ttl)
      probe = 1
    end
    put('q', best, num(get('q', best)) + 1)
    local second = add(best, sec, estimate)
    return {1, best, second, probe}
  end
  local any_enabled, any_limited, soonest = false, false, nil
  for i, d in ipairs(deps) do
    if d.enabled then
      any_enabled = true
      if not tried[i] then
        local wait
        local b = blocked(i, now)
        if b ~= nil and b[1] == 'p' then
          wait = 1000
        elseif b ~= nil then
          if b[1] == 'r' then any_limited = true end
          wait = b[2]
        elseif d.limit > 0 then
          any_limited = true
          wait = time_until_fits(i, now, sec, estimate, d.limit)
        else
          wait = 0
        end
        if soonest == nil or wait < soonest then soonest = wait end
      end
    end
  end
  if not any_enabled then return {0, 'none', 0, 0} end
  if soonest == nil then return {0, 'exhausted', 0, 0} end
  if any_limited then return {0, 'rate', soonest, 0} end
  return {0, 'fail', soonest, 0}
end

local out, applied = {}, {}
local k = tonumber(ARGV[A + 1 + N * 3])
apply_ops(A + 2 + N * 3 + k * 2, now, sec, applied)
for r = 1, k do
  local at = A + 1 + N * 3 + (r - 1) * 2
  local estimate, marks = tonumber(ARGV[at + 1]), ARGV[at + 2]
  local result
  if string.find(marks, '2', 1, true) then
    result = try(estimate, marks, true)
    if result[1] == 0 then result = try(estimate, marks, false) end
  else
    result = try(estimate, marks, false)
  end
  for _, v in ipairs(result) do out[#out + 1] = v end
end
for _, v in ipairs(applied) do out[#out + 1] = v end
flush()
return out
