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
  local expiry = now + call('PTTL', h)
  e.status = STATUS_BUSY
  e.lease = string.format('%.0f', now + lease)
  put_entry(h, e)
  call('ZREM', index_key(e.region, STATUS_IDLE), id)
  call('ZADD', index_key(e.region, STATUS_BUSY), expiry, id)
  call('ZADD', claims_key, now + lease, id)
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

-- The most recently refreshed idle host of region ARGV[i], claimed, or nil.
local function from_region(i)
  local idx = index_key(ARGV[i], STATUS_IDLE)
  -- Bounded, as in requests.lua: readers skip expired members by score.
  trim(idx)
  -- The most recently refreshed idle host: the likeliest to be alive. A few
  -- tries in case the index and the entry disagree (an entry deleted by hand).
  for _ = 1, 4 do
    local m = call('ZREVRANGEBYSCORE', idx, '+inf', now, 'LIMIT', 0, 1)
    if #m == 0 then break end
    local got = take(m[1], ARGV[i])
    if got then return got end
    call('ZREM', idx, m[1])
  end
  return nil
end

-- Each region on its own: a key of the wrong type in one (entry.lua's call
-- names it) must not stop finds in the others. Only when no region had a
-- host and one failed is the claim an error (its host may have been there).
local failed
for i = CLAIM_REGIONS, #ARGV do
  local ok, got = pcall(from_region, i)
  if ok and got then return got end
  if not ok then failed = failed or got end
end
if failed then return {err = 'claim.lua: ' .. tostring(failed)} end
return {}
