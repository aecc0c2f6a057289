-- push: tokens an instance admitted on its own while Redis was away, added
-- to the shared window at the seconds they were admitted (older ones have
-- left the window anyway).
-- ARGV (after the one name): second, tokens pairs
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local head = advance(1, sec)
local added = 0
for a = A, #ARGV, 2 do
  local second, tokens = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  if second + WINDOW > head and second <= head then
    redis.call('HINCRBY', wkey(1), tostring(second % WINDOW), tokens)
    added = added + tokens
  end
end
put('t', 1, num(get('t', 1)) + added)
moved[1] = true
flush()
return 1
