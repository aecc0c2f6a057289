-- toggle: mod.rs's Pool::set_enabled: a deployment put back starts afresh
-- (no old failures, no saved-up credit).
-- ARGV (after the one name): enabled (0/1), enabled in the config (0/1)
local before = get('e', 1)
if before == false then before = ARGV[A + 1] end
put('e', 1, ARGV[A])
put('c', 1, 0)
local changed = before ~= ARGV[A]
if changed and ARGV[A] == '1' then
  -- Health starts afresh; the request and failure counts stay.
  put('f', 1, false)
  put('u', 1, false)
  put('k', 1, false)
  put('n', 1, false)
  redis.call('DEL', pkey(1))
end
flush()
if changed then return 1 end
return 0
