-- hostreg sweep: hosts claimed by a client whose lease ended without the host
-- confirming (a client that never connected, a legacy host that never sends
-- status updates) go back to idle.
-- ARGV[1] key prefix, ARGV[2] how many at most in one call.
-- Returns the number of hosts returned to idle.
local pfx, max = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', pfx .. 'claims', '-inf', now, 'LIMIT', 0, max)
local n = 0
for _, id in ipairs(due) do
  redis.call('ZREM', pfx .. 'claims', id)
  local h = pfx .. 'h:' .. id
  local cur = redis.call('HMGET', h, 'lease', 'region', 'status')
  if cur[1] and tonumber(cur[1]) <= now and cur[3] == 'busy' then
    local expiry = now + redis.call('PTTL', h)
    redis.call('HDEL', h, 'lease')
    redis.call('HSET', h, 'status', 'idle')
    redis.call('ZREM', pfx .. 'i:' .. cur[2] .. ':busy', id)
    redis.call('ZADD', pfx .. 'i:' .. cur[2] .. ':idle', expiry, id)
    n = n + 1
  end
end
return n
