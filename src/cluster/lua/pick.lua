-- pick: pick.rs's Pool::pick_for and why_unavailable, atomically for the
-- cluster, for one request or for several in a row (the picks of concurrent
-- requests of one model, batched: the same decisions as one script call each).
-- KEYS: as every script's, the pins, then T:q (see lib.lua).
-- ARGV (after the names): probe_ttl_ms, lease_ttl_ms, owner (the instance
--   whose requests take the leases), freed (the channel its waiting
--   requests are told on, src/cluster/freed.rs), per deployment weight, tpm limit (0 =
--   none), enabled in the config (0/1), tier, its other limits ('' for
--   none, else "rpm rpm_slice_s input_tpm output_tpm max_in_flight", 0 =
--   none: a deployment with only a TPM limit costs what it did before they
--   were checked); then k, and per request: input and
--   output estimates, marks (one character per deployment: 0 open, 1 tried,
--   2 known not to offer the endpoint: tried last), pin (the index in KEYS
--   of the session's pin key, 0 for none), pin ttl_ms, lease number (its
--   lease is "<owner>:<number>"), wait_ms (how long the request waits for
--   room when none is there: then T:q marks the model waited for; 0: it
--   does not wait); then, to the end, settles, undos,
--   releases and verdicts of earlier requests in apply.lua's format,
--   applied first (they ride along instead of costing a call of their own).
-- A pin key holds "<deployment name>|<last use ms>|<tokens>" (affinity.rs's
-- Pin: the session's tokens fading linearly over a minute), with a TTL only
-- to clean up: whether it is alive is decided on the script's clock.
-- Returns, joined by spaces in one string, per request 6 values: 1, index (1-based), second, probe, the
-- index the session was pinned to before (0: none or the same), whether it
-- took a lease (0/1); or 0, kind, retry_ms, 0, 0, 0 with kind 'none' (none
-- enabled), 'exhausted' (all tried), 'rate', 'fail'; then per op apply.lua's
-- 3 values. Tells the instances waiting for the model when the ops may
-- have freed room (lib.lua's tell_freed).
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local probe_ttl, lease_ttl, owner = tonumber(ARGV[A]), tonumber(ARGV[A + 1]), ARGV[A + 2]
local channel = ARGV[A + 3]
local PER_DEP, PER_REQUEST = 5, 7
local deps = {}
local by_name = {}
for i = 1, N do
  local a = A + 4 + (i - 1) * PER_DEP
  local tpm = tonumber(ARGV[a + 1])
  local d = {weight = tonumber(ARGV[a]), tpm = tpm, enabled = ARGV[a + 2] == '1',
    tier = tonumber(ARGV[a + 3]), rpm = 0, slice = 0, input = 0, output = 0, flight = 0,
    per = 0, more = false, limited = tpm > 0}
  local more = ARGV[a + 4]
  if more ~= '' then
    local r, s, inp, out, f = string.match(more, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
    d.rpm, d.slice, d.input, d.output, d.flight = tonumber(r), tonumber(s), tonumber(inp),
      tonumber(out), tonumber(f)
    -- limits.rs's Limits::per_slice: at least one request a slice.
    if d.rpm > 0 and d.slice > 0 then d.per = math.max(math.floor(d.rpm * d.slice / WINDOW), 1) end
    d.more = d.rpm > 0 or d.input > 0 or d.output > 0 or d.flight > 0
    d.limited = d.limited or d.more
  end
  deps[i] = d
  by_name[NAMES[i]] = i
end
for i = 1, N do
  local enabled = get('e', i)
  if enabled ~= false then deps[i].enabled = (enabled == '1') end
end

-- limits.rs's Meter::full beyond tokens (see admits below).
local function admits_more(i, d, input, output)
  if d.flight > 0 and in_flight(i, now) >= d.flight then return false end
  if d.rpm > 0 and not fits(i, 'r', sec, 1, d.rpm) then return false end
  if d.per > 0 then
    local u = within(i, sec, d.slice)
    if u > 0 and u >= d.per then return false end
  end
  if d.input > 0 and not fits(i, 'i', sec, input, d.input) then return false end
  if d.output > 0 and not fits(i, 'o', sec, output, d.output) then return false end
  return true
end

-- limits.rs's Meter::full: inside every limit the deployment has.
local function admits(i, d, input, output)
  if d.tpm > 0 and not fits(i, '', sec, input + output, d.tpm) then return false end
  return not d.more or admits_more(i, d, input, output)
end

-- limits.rs's Meter::time_until_fits: ms until the request fits every
-- limit; nil when a request in flight must end first.
local function wait_for(i, d, input, output)
  local wait = 0
  local function upto(w, need, limit, span)
    if limit > 0 then wait = math.max(wait, time_until_fits(i, w, now, sec, need, limit, span)) end
  end
  upto('', input + output, d.tpm, WINDOW)
  upto('r', 1, d.rpm, WINDOW)
  upto('r', 1, d.per, d.slice)
  upto('i', input, d.input, WINDOW)
  upto('o', output, d.output, WINDOW)
  if d.flight > 0 and in_flight(i, now) >= d.flight then return nil end
  return wait
end

-- pick.rs's IN_FLIGHT_HINT: a place in flight frees at no known time.
local IN_FLIGHT_HINT = 1000

-- affinity.rs's fade: linearly to nothing over a minute, in integers.
local function fade(tokens, ago)
  if ago >= 60000 then return 0 end
  return math.floor(tokens * (60000 - ago) / 60000)
end

-- The session's live pin: the deployment's index and its faded tokens, or nil.
local function pinned(pin, ttl)
  if pin == 0 then return nil, 0 end
  local v = redis.call('GET', KEYS[pin])
  if not v then return nil, 0 end
  local name, last, tokens = string.match(v, '^(.*)|(%d+)|(%d+)$')
  last, tokens = tonumber(last), tonumber(tokens)
  if name == nil or last == nil or now - last >= ttl then return nil, 0 end
  return by_name[name], fade(tokens, now - last)
end

-- pick.rs's should_move: the session's deployment is over its share of the
-- tier's tokens by more than OVERLOAD_PCT %, and moving the session to the
-- least loaded one closes at least half of the gap between the two.
local OVERLOAD_PCT = 5
local function should_move(i, session, tier, open)
  local total, weights = 0, 0
  local least_used, least_weight = nil, nil
  for j, d in ipairs(deps) do
    if open[j] and d.tier == tier then
      local u, w = used(j, '', sec), math.max(d.weight, 1)
      total = total + u
      weights = weights + w
      if j ~= i and (least_used == nil or u * least_weight < least_used * w) then
        least_used, least_weight = u, w
      end
    end
  end
  if least_used == nil then return false end
  local mine, my_weight = used(i, '', sec), math.max(deps[i].weight, 1)
  local over = mine * weights * 100 > total * my_weight * (100 + OVERLOAD_PCT)
  local excess = math.max(mine * weights - total * my_weight, 0)
  local shortfall = math.max(total * least_weight - least_used * weights, 0)
  return over and session * 4 * weights < excess + shortfall
end

local function try(input, output, marks, avoiding, pin, ttl, seq)
  local tried, open = {}, {}
  for i = 1, N do
    local m = string.byte(marks, i)
    tried[i] = m == 49 or (avoiding and m == 50)
  end
  -- The best tier with a deployment that can take the request.
  local tier = nil
  for i, d in ipairs(deps) do
    open[i] = d.enabled and not tried[i] and blocked(i, now) == nil
      and admits(i, d, input, output)
    if open[i] and (tier == nil or d.tier < tier) then tier = d.tier end
  end
  local best = nil
  local was, weight = nil, 0
  if tier ~= nil then
    was, weight = pinned(pin, ttl)
    if was ~= nil and open[was] and deps[was].tier == tier and not should_move(was, weight, tier, open) then
      best = was
    elseif pin ~= 0 then
      -- A new session: the fewest tokens in the window for the weight.
      local best_used, best_weight = nil, nil
      for i, d in ipairs(deps) do
        if open[i] and d.tier == tier then
          local u, w = used(i, '', sec), math.max(d.weight, 1)
          local better = best == nil
          if not better then
            local mine, theirs = u * best_weight, best_used * w
            better = mine < theirs or (mine == theirs and w > best_weight)
          end
          if better then best, best_used, best_weight = i, u, w end
        end
      end
    else
      -- select.rs: every open deployment gains its weight; the richest wins
      -- and pays back what all of them gained.
      local total, best_credit = 0, nil
      for i, d in ipairs(deps) do
        if open[i] and d.tier == tier then
          local f = facts(i)
          local credit = num(f.c) + d.weight
          f.c = credit
          total = total + d.weight
          if best == nil or credit > best_credit then best, best_credit = i, credit end
        end
      end
      facts(best).c = best_credit - total
      dirty = true
    end
  end
  if best ~= nil then
    if pin ~= 0 then
      local tokens = string.format('%d', weight + input + output)
      redis.call('SET', KEYS[pin], NAMES[best] .. '|' .. now .. '|' .. tokens, 'PX', ttl + 60000)
    end
    local repinned = 0
    if was ~= nil and was ~= best then repinned = was end
    local probe = 0
    local f = facts(best)
    if f.n == '1' then
      redis.call('SET', pkey(best), '1', 'PX', probe_ttl)
      probe = 1
    end
    f.q = num(f.q) + 1
    dirty = true
    -- limits.rs's Meter::add, in the windows the deployment keeps.
    local d = deps[best]
    local second = add(best, '', sec, input + output)
    if d.rpm > 0 then add(best, 'r', sec, 1) end
    if d.input > 0 then add(best, 'i', sec, input) end
    if d.output > 0 then add(best, 'o', sec, output) end
    local leased = 0
    if d.flight > 0 then
      lease(best, now, owner .. ':' .. seq, lease_ttl)
      leased = 1
    end
    return {1, best, second, probe, repinned, leased}
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
        elseif d.limited then
          wait = wait_for(i, d, input, output)
          if wait == nil then
            wait = IN_FLIGHT_HINT
            any_limited = true
          elseif wait > 0 then
            any_limited = true
          end
        else
          wait = 0
        end
        if soonest == nil or wait < soonest then soonest = wait end
      end
    end
  end
  if not any_enabled then return {0, 'none', 0, 0, 0, 0} end
  if soonest == nil then return {0, 'exhausted', 0, 0, 0, 0} end
  if any_limited then return {0, 'rate', soonest, 0, 0, 0} end
  return {0, 'fail', soonest, 0, 0, 0}
end

-- A request that waits re-picks when its hint runs out (or sooner when
-- woken): the mark outlives the hint by this much.
local MARK_SLACK = 1000

local out, applied = {}, {}
local requests = A + 4 + N * PER_DEP
local k = tonumber(ARGV[requests])
apply_ops(requests + 1 + k * PER_REQUEST, now, sec, applied)
local mark = 0
for r = 1, k do
  local at = requests + 1 + (r - 1) * PER_REQUEST
  local input, output, marks = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), ARGV[at + 2]
  local pin, ttl, seq = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]), ARGV[at + 5]
  local wait = tonumber(ARGV[at + 6])
  local result
  if string.find(marks, '2', 1, true) then
    result = try(input, output, marks, true, pin, ttl, seq)
    if result[1] == 0 then result = try(input, output, marks, false, pin, ttl, seq) end
  else
    result = try(input, output, marks, false, pin, ttl, seq)
  end
  -- Only rate limits and cooldowns are waited for (waiting.rs).
  if result[1] == 0 and wait > 0 and (result[2] == 'rate' or result[2] == 'fail') then
    mark = math.max(mark, math.min(result[3], wait) + MARK_SLACK)
  end
  for _, v in ipairs(result) do out[#out + 1] = v end
end
for _, v in ipairs(applied) do out[#out + 1] = v end
flush()
tell_freed(owner)
if mark > 0 then mark_waiting(channel, mark) end
-- One string, the values joined by spaces (none holds one): one reply value
-- for the instance to read, not one per number.
return table.concat(out, ' ')
