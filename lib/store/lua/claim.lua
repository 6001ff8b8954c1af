-- hostreg claim: give one idle host to a matchmaking client, atomically, so
-- that two concurrent claims never get the same host.
-- ARGV (lib/store/script.h, HR_SCRIPT_CLAIM_ARGS): key prefix, lease in ms, the
-- hostId wanted ('' = any), a random number below 2^31 (pick), the claim's
-- id ('' = none; KEY_CLAIM then maps it to the host, for release.lua), then
-- regions in order of preference.
-- The host becomes busy with a lease: `lease` in its entry and a member of
-- the claims set scored by the lease's end. The host's own status update
-- `busy` confirms the claim (the session runs; its `idle` afterwards ends it),
-- an `idle` before that leaves the claim in place, and sweep.lua returns hosts
-- whose lease ended unconfirmed to idle.
-- Returns {hostId, roomId, region} (CLAIMED_*) or an empty array when no idle
-- host fits.
-- Cost: O(log N) per region tried, whatever the number of hosts.
local lease, want = tonumber(ARGV[CLAIM_LEASE]), ARGV[CLAIM_HOST]
local pick = tonumber(ARGV[CLAIM_PICK])
local claim_id = ARGV[CLAIM_ID]
local claim_key = claim_id ~= '' and pfx .. KEY_CLAIM .. claim_id or nil

-- A claim released before it ran (its answer timed out, release.lua got
-- there first) takes nothing.
if claim_key and call('GET', claim_key) then return {} end

local function take(id, region)
  local h = host_key(id)
  local e = get_entry(h)
  if not e or e.status ~= STATUS_IDLE then return nil end
  if region and e.region ~= region then return nil end
  local expiry = now + call('PTTL', h)
  e.status = STATUS_BUSY
  e.lease = string.format('%.0f', now + lease)
  e.claim = claim_key and claim_id or nil
  put_entry(h, e)
  if claim_key then call('SET', claim_key, id, 'PX', lease) end
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

-- One of the idle hosts of region ARGV[i], chosen uniformly at random, claimed,
-- or nil. Uniformly: a host that keeps announcing itself (the freshest) must
-- not win every find. The live members of an index are the ones scored from
-- now on, which are its highest ranks: a rank among them by `pick` costs
-- O(log N). A few tries in case the index and the entry disagree (an entry
-- deleted by hand), each with the next number of a small LCG.
local function from_region(i)
  local idx = index_key(ARGV[i], STATUS_IDLE)
  -- Bounded, as in requests.lua: readers skip expired members by score.
  trim(idx)
  for _ = 1, 4 do
    local expired = call('ZCOUNT', idx, '-inf', '(' .. now)
    local live = call('ZCOUNT', idx, now, '+inf')
    if live == 0 then break end
    local rank = expired + pick % live
    local m = call('ZRANGE', idx, rank, rank)
    if #m == 0 then break end
    local got = take(m[1], ARGV[i])
    if got then return got end
    call('ZREM', idx, m[1])
    pick = (pick * 1103515245 + 12345) % 2147483648
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
