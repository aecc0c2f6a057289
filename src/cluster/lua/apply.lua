-- apply: what happened after picks, in order: settles (window.rs's
-- TpmWindow::settle, the estimate replaced by the usage) and verdicts
-- (health.rs's Health::record and Pool::record's counters), one or many.
-- ARGV (after the names), per op: 's', deployment (1-based), second,
--   reserved, actual; or 'r', deployment, verdict, hint_ms (-1: none),
--   failure_threshold, cooldown_ms, max_cooldown_ms, rate_limit_cooldown_ms.
-- Returns per op 3 values: 0, '', 0 (nothing to announce); 1, cause, for_ms
-- (a cooldown began or grew); 2, '', 0 (recovered).
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
prefetch('htfuknx')
local out = {}
apply_ops(A, now, sec, out)
flush()
return out
