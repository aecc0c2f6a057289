-- state: what /admin/state shows of each deployment, cluster-wide.
-- KEYS: T:en, then per deployment: T:w:<dep>, T:h:<dep>, T:p:<dep>
-- ARGV: now_ms, n, then per deployment: name, enabled in the config (0/1)
-- Returns per deployment {enabled, tpm_used, cause ('' none), remaining_ms, consecutive failures, requests, failures}.
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local n = tonumber(ARGV[2])
local out = {}
for i = 1, n do
  local name, default = ARGV[1 + i * 2], ARGV[2 + i * 2]
  local w, h, p = KEYS[2 + (i - 1) * 3], KEYS[3 + (i - 1) * 3], KEYS[4 + (i - 1) * 3]
  local enabled = redis.call('HGET', KEYS[1], name)
  if enabled == false then enabled = default end
  local b = blocked(h, p, now)
  local cause, remaining = '', 0
  if b ~= nil and b[1] ~= 'p' then cause, remaining = b[1], b[2] end
  out[i] = {tonumber(enabled), used(w, sec), cause, remaining, num(redis.call('HGET', h, 'f')),
            num(redis.call('HGET', h, 'q')), num(redis.call('HGET', h, 'x'))}
end
return out
