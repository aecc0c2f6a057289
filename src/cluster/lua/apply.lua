-- apply: what happened after picks, in order: settles (window.rs's
-- TpmWindow::settle, the estimate replaced by the usage) and verdicts
-- (health.rs's Health::record and Pool::record's counters), one or many.
-- ARGV (after the names): then per op: 's', deployment (1-based), second,
--   reserved, actual; or 'r', deployment, verdict, hint_ms (-1: none),
--   failure_threshold, cooldown_ms, max_cooldown_ms, rate_limit_cooldown_ms.
-- Returns per op 3 values: 0, '', 0 (nothing to announce); 1, cause, for_ms
-- (a cooldown began or grew); 2, '', 0 (recovered).
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
prefetch('htfukn')
local out = {}
local a = A
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
flush()
return out
