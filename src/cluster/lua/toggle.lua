-- toggle: mod.rs's Pool::set_enabled: a deployment put back starts afresh
-- (no old failures, no saved-up credit).
-- KEYS: T:en, T:cr, T:h:<dep>, T:p:<dep>   ARGV: name, enabled (0/1), enabled in the config (0/1)
local before = redis.call('HGET', KEYS[1], ARGV[1])
if before == false then before = ARGV[3] end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], KEEP_MS * 30)
redis.call('HSET', KEYS[2], ARGV[1], 0)
local changed = before ~= ARGV[2]
if changed and ARGV[2] == '1' then
  -- Health starts afresh; the request and failure counts stay.
  redis.call('HDEL', KEYS[3], 'f', 'u', 'c', 'n')
  redis.call('DEL', KEYS[4])
end
if changed then return 1 end
return 0
