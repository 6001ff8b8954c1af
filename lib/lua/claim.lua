-- hostreg claim: give one idle host to a matchmaking client, atomically, so
-- that two concurrent claims never get the same host.
-- ARGV[1] key prefix, ARGV[2] lease in ms, ARGV[3] hostId wanted ('' = any),
-- ARGV[4..] regions in order of preference.
-- The host becomes busy with a lease: `lease` in its entry and a member of
-- <prefix>claims scored by the lease's end. A status update from the host
-- confirms (or ends) the session and removes the lease; sweep.lua returns
-- hosts whose lease ended unconfirmed to idle.
-- Returns {hostId, roomId, region} or an empty array when no idle host fits.
-- Cost: O(log N) per region tried, whatever the number of hosts.
local pfx, lease, want = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local function take(id, region)
  local h = pfx .. 'h:' .. id
  local e = get_entry(h)
  if not e or e.status ~= 'idle' then return nil end
  if region and e.region ~= region then return nil end
  local expiry = now + redis.call('PTTL', h)
  e.status = 'busy'
  e.lease = string.format('%.0f', now + lease)
  put_entry(h, e)
  redis.call('ZREM', pfx .. 'i:' .. e.region .. ':idle', id)
  redis.call('ZADD', pfx .. 'i:' .. e.region .. ':busy', expiry, id)
  redis.call('ZADD', pfx .. 'claims', now + lease, id)
  return {id, e.room, e.region}
end

if want ~= '' then
  if #ARGV < 4 then return take(want, nil) or {} end
  for i = 4, #ARGV do
    local got = take(want, ARGV[i])
    if got then return got end
  end
  return {}
end

for i = 4, #ARGV do
  local idx = pfx .. 'i:' .. ARGV[i] .. ':idle'
  -- Bounded, as in requests.lua: readers skip expired members by score.
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. now, 'LIMIT', 0, 64)
  if #old > 0 then redis.call('ZREM', idx, unpack(old)) end
  -- The most recently refreshed idle host: the likeliest to be alive. A few
  -- tries in case the index and the entry disagree (an entry deleted by hand).
  for _ = 1, 4 do
    local m = redis.call('ZREVRANGEBYSCORE', idx, '+inf', now, 'LIMIT', 0, 1)
    if #m == 0 then break end
    local got = take(m[1], ARGV[i])
    if got then return got end
    redis.call('ZREM', idx, m[1])
  end
end
return {}
