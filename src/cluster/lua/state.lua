-- state: what /admin/state shows of each deployment, cluster-wide.
-- ARGV (after the names): per deployment, enabled in the config (0/1)
-- Returns per deployment {enabled, tpm_used, cause ('' none), remaining_ms,
-- consecutive failures, requests, failures, rpm_used, input_tpm_used,
-- output_tpm_used, in_flight} (the last four 0 where the cluster keeps no
-- such window or lease).
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local out = {}
for i = 1, N do
  local enabled = get('e', i)
  if enabled == false then enabled = ARGV[A + i - 1] end
  local b = blocked(i, now)
  local cause, remaining = '', 0
  if b ~= nil and b[1] ~= 'p' then cause, remaining = b[1], b[2] end
  local leases = in_flight(i, now)
  out[i] = {tonumber(enabled), used(i, '', sec), cause, remaining, num(get('f', i)),
            num(get('q', i)), num(get('x', i)), used(i, 'r', sec), used(i, 'i', sec),
            used(i, 'o', sec), leases}
end
flush()
return out
