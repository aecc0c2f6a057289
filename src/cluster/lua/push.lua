-- push: tokens an instance admitted on its own while Redis was away, added
-- to the shared window at the seconds they were admitted (older ones have
-- left the window anyway).
-- KEYS: T:w:<dep>   ARGV: now_ms, then second, tokens pairs
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local head = advance(KEYS[1], sec)
for i = 2, #ARGV, 2 do
  local second, tokens = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if second + WINDOW > head and second <= head then
    redis.call('HINCRBY', KEYS[1], tostring(second % WINDOW), tokens)
    redis.call('HINCRBY', KEYS[1], 't', tokens)
  end
end
return 1
