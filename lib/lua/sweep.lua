-- hostreg sweep: hosts claimed by a client whose lease ended without the host
-- confirming (a client that never connected, a legacy host that never sends
-- status updates) go back to idle.
-- ARGV[1] key prefix, ARGV[2] how many at most in one call.
-- Returns the number of hosts returned to idle.
local pfx, max = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', pfx .. 'claims', '-inf', now, 'LIMIT', 0, max)
local n = 0
for _, id in ipairs(due) do
  redis.call('ZREM', pfx .. 'claims', id)
  local h = pfx .. 'h:' .. id
  local e = get_entry(h)
  if e and e.lease and tonumber(e.lease) <= now and e.status == 'busy' then
    local expiry = now + redis.call('PTTL', h)
    e.lease = nil
    e.status = 'idle'
    put_entry(h, e)
    redis.call('ZREM', pfx .. 'i:' .. e.region .. ':busy', id)
    redis.call('ZADD', pfx .. 'i:' .. e.region .. ':idle', expiry, id)
    n = n + 1
  end
end
return n
