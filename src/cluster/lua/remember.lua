-- remember: which deployment produced each stored Responses-API response,
-- for every instance of the cluster. Standalone (not lib.lua's layout).
--
-- KEYS[1]    the index: a sorted set of response ids scored by when they
--            were noted (ms), for the bound and to find the oldest
-- KEYS[1+k]  the k-th op's id key, a string holding its producer, with a TTL
-- ARGV[1]    now_ms ('' = the server's clock); ARGV[2] the prefix of an id's
--            key (the cluster's hash tag and ':r:'); then per op, in order:
--              '+', id, producer, ttl_ms, bound   noted
--              '-', id                            forgotten
--
-- The oldest ids past the bound are found in the index, so their keys are
-- built here from the prefix rather than passed in KEYS: every key carries
-- the cluster's one hash tag, so Redis Cluster keeps them all on this node.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local index, prefix = KEYS[1], ARGV[2]
local keep_ms = 0
local i, k = 3, 2
while i <= #ARGV do
  local op, id = ARGV[i], ARGV[i + 1]
  if op == '+' then
    local ttl, bound = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
    redis.call('SET', KEYS[k], ARGV[i + 2], 'PX', ttl)
    redis.call('ZADD', index, now, id)
    -- Expired ids (their keys are gone already), then the oldest past the bound.
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now - ttl)
    local over = redis.call('ZCARD', index) - bound
    if over > 0 then
      for _, old in ipairs(redis.call('ZRANGE', index, 0, over - 1)) do
        redis.call('DEL', prefix .. old)
      end
      redis.call('ZREMRANGEBYRANK', index, 0, over - 1)
    end
    if ttl > keep_ms then keep_ms = ttl end
    i = i + 5
  else
    redis.call('DEL', KEYS[k])
    redis.call('ZREM', index, id)
    i = i + 2
  end
  k = k + 1
end
-- The index goes too when nothing is noted for a whole TTL.
if keep_ms > 0 then redis.call('PEXPIRE', index, keep_ms) end
return 0
