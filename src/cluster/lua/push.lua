-- push: what an instance admitted on its own while Redis was away, added
-- to the shared windows at the seconds it was admitted (older ones have
-- left the windows anyway): its tokens, and its requests, input and output
-- in the windows the deployment's limits keep.
-- ARGV (after the one name): windows (a mask, as in apply.lua), then per
--   second: second, tokens, requests, input, output
local now = now_ms(ARGV[1])
local sec = math.floor(now / 1000)
local head = advance(1, sec)
local mask = tonumber(ARGV[A])
local WINDOWS = {{'', 0}, {'r', 1}, {'i', 2}, {'o', 4}}
local added = {}
for a = A + 1, #ARGV, 5 do
  local second = tonumber(ARGV[a])
  if second + WINDOW > head and second <= head then
    for k, w in ipairs(WINDOWS) do
      local n = tonumber(ARGV[a + k])
      if n > 0 and (w[2] == 0 or counted(mask, w[2])) then
        redis.call('HINCRBY', wkey(1), w[1] .. (second % WINDOW), n)
        added[w[1]] = (added[w[1]] or 0) + n
      end
    end
  end
end
for w, n in pairs(added) do put(TOTAL[w], 1, num(get(TOTAL[w], 1)) + n) end
moved[1] = true
flush()
return 1
