-- bench/run's memory reference: the naive layout of the issue (a text UUID
-- key per host holding a 4-field hash with a TTL, and a sorted set per
-- region as the index), for hosts first .. first + n - 1, with the hostIds,
-- rooms and regions that `hostreg bench` uses.
-- ARGV[1] first, ARGV[2] n.
local first, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local regions = {'us-east-1', 'us-west-1', 'eu-central', 'local'}
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = first, first + n - 1 do
  local id = string.format('b0b0b0b0-%04x-4000-8000-%012x', math.floor(i / 65536) % 65536,
                           i % 65536)
  local region = regions[i % 4 + 1]
  redis.call('HSET', 'host:' .. id, 'roomId', string.format('room%08x', i), 'region', region,
             'status', 'idle', 'lastSeen', now)
  redis.call('EXPIRE', 'host:' .. id, 3000) -- not to expire while measured
  redis.call('ZADD', 'hosts:' .. region, now + 30000, id)
end
return n
