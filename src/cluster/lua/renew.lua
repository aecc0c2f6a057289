-- renew: an instance's leases of requests still in flight, given
-- lease_ttl_ms more (from now, on the script's clock). Only leases still
-- there are renewed: one released meanwhile stays released, and one that
-- expired (Redis away longer than its TTL) is not taken again.
-- ARGV (after the names): lease_ttl_ms, then per deployment: count, leases
local now = now_ms(ARGV[1])
local ttl = tonumber(ARGV[A])
local a = A + 1
local renewed = 0
for i = 1, N do
  local count = tonumber(ARGV[a])
  if count > 0 then
    local args = {'XX', 'CH'}
    for j = 1, count do
      args[#args + 1] = now + ttl
      args[#args + 1] = ARGV[a + j]
    end
    renewed = renewed + redis.call('ZADD', lkey(i), unpack(args))
    redis.call('PEXPIRE', lkey(i), lease_keep(ttl))
  end
  a = a + 1 + count
end
return renewed
