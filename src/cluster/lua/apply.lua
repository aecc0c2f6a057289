-- apply: what happened after picks, in order: settles (limits.rs's
-- Meter::settle, the estimates replaced by the usage), undos (Meter::undo:
-- a request never sent counts nothing), releases (its lease: the request
-- ended) and verdicts (health.rs's Health::record and Pool::record's
-- counters), one or many.
-- KEYS: as every script's, then T:q (see lib.lua).
-- ARGV (after the names): owner (the instance sending them), then per op:
--   's', deployment (1-based), second,
--   reserved input, reserved output, actual input, actual output, windows
--   (the mask of the windows beyond tokens the pick counted in: 1 requests,
--   2 input, 4 output); or 'u', deployment, second, reserved input,
--   reserved output, windows; or 'l', deployment, lease; or 'r',
--   deployment, verdict, hint_ms (-1: none), failure_threshold,
--   cooldown_ms, max_cooldown_ms, rate_limit_cooldown_ms.
-- Returns per op 3 values: 0, '', 0 (nothing to announce); 1, cause, for_ms
-- (a cooldown began or grew); 2, '', 0 (recovered). Tells the instances
-- waiting for the model when room may have freed (lib.lua's tell_freed).
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local out = {}
apply_ops(A + 1, now, sec, out)
flush()
tell_freed(ARGV[A])
return table.concat(out, ' ')
