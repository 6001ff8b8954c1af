-- hostreg claim: give one idle host to a matchmaking client, atomically, so
-- that two concurrent claims never get the same host.
-- ARGV (lib/store/script.h, HR_SCRIPT_CLAIM_ARGS): key prefix, lease in ms, the
-- hostId wanted ('' = any), then regions in order of preference.
-- The host becomes busy with a lease: `lease` in its entry and a member of
-- the claims set scored by the lease's end. A status update from the host
-- confirms (or ends) the session and removes the lease; sweep.lua returns
-- hosts whose lease ended unconfirmed to idle.
-- Returns {hostId, roomId, region} (CLAIMED_*) or an empty array when no idle
-- host fits.
-- Cost: O(log N) per region tried, whatever the number of hosts.
local lease, want = tonumber(ARGV[CLAIM_LEASE]), ARGV[CLAIM_HOST]

local function take(id, region)
  local h = host_key(id)
  local e = get_entry(h)
  if not e or e.status ~= STATUS_IDLE then return nil end
  if region and e.region ~= region then return nil end
  local expiry = now + redis.call('PTTL', h)
  e.status = STATUS_BUSY
  e.lease = string.format('%.0f', now + lease)
  put_entry(h, e)
  redis.call('ZREM', index_key(e.region, STATUS_IDLE), id)
  redis.call('ZADD', index_key(e.region, STATUS_BUSY), expiry, id)
  redis.call('ZADD', claims_key, now + lease, id)
  local got = {}
  got[CLAIMED_ID], got[CLAIMED_ROOM], got[CLAIMED_REGION] = id, e.room, e.region
  return got
end

if want ~= '' then
  if #ARGV < CLAIM_REGIONS then return take(want, nil) or {} end
  for i = CLAIM_REGIONS, #ARGV do
    local got = take(want, ARGV[i])
    if got then return got end
  end
  return {}
end

for i = CLAIM_REGIONS, #ARGV do
  local idx = index_key(ARGV[i], STATUS_IDLE)
  -- Bounded, as in requests.lua: readers skip expired members by score.
  trim(idx)
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
