-- hostreg claim: give one idle host of one bucket to a matchmaking client,
-- atomically, so that two concurrent claims never get the same host. The
-- store picks the bucket (from the region's summary, or the wanted host's).
-- KEYS: the bucket's keys, then the claim key when the claim has an id.
-- ARGV (lib/store/script.h, HR_SCRIPT_CLAIM_ARGS): lease in ms, the hostId
-- wanted ('' = any), a random number below 2^31 (pick), the claim's id (''
-- = none; the claim key then maps it to the host, for release.lua), then
-- regions in order of preference.
-- The claim takes one of the host's free slots, under a lease: the host is
-- a member of the bucket's claims set scored by the lease's end (the latest
-- claim's, when it has several). The claim that takes its last free slot
-- makes it busy. The host's own status update `busy` confirms its claims
-- (the sessions run; its `idle` afterwards ends them), an `idle` before
-- that leaves them in place, and sweep.lua ends leases that ran out
-- unconfirmed: their slots are free again (entry.lua: end_lease).
-- Returns {hostId, roomId, region} (CLAIMED_*), hostId '' when no idle host
-- fits, then the summary changes.
local moving = slot_moving()
if moving then return moving end
local k = bucket(0)
local lease, want = tonumber(ARGV[CLAIM_LEASE]), ARGV[CLAIM_HOST]
local pick = tonumber(ARGV[CLAIM_PICK])
local claim_id = ARGV[CLAIM_ID]
local claim_key = claim_id ~= '' and KEYS[BKEYS + 1] or nil
local none = {'', '', ''}

-- A claim released before it ran (its answer timed out, release.lua got
-- there first) takes nothing.
if claim_key and call('GET', claim_key) then return changes(none) end

-- Lapsed claims of this bucket first, a few: a host that would be idle
-- again is found. (An expired idle host met below is removed there.)
sweep_claims(k, 16)

local function take(id, region)
  local e = get_entry(k, id)
  if e and not live(e) then remove_host(k, id, e) end
  if not live(e) then return nil end
  local was = findable(e)
  -- A lease that ran out and no sweep ended yet gives its slots back first.
  local l = lease_of(k, id)
  local lapsed = l and l <= now
  if lapsed then end_lease(k, id, e, false) end
  if not findable(e) or (region and e.region ~= region) then
    if lapsed then
      reindex(k, id, e, was, e.region)
      put_entry(k, id, e)
    end
    return nil
  end
  local ends = now + lease
  e.free = e.free - 1
  if e.free == 0 then e.status = STATUS_BUSY end
  reindex(k, id, e, was, e.region)
  call('ZADD', k.c, ends, id)
  put_entry(k, id, e)
  -- The lease's end names this claim: release.lua frees the host only while
  -- its claim still ends then (not a later claim of the same host).
  if claim_key then call('SET', claim_key, string.format('%.0f', ends) .. ' ' .. id, 'PX', lease) end
  local got = {}
  got[CLAIMED_ID], got[CLAIMED_ROOM], got[CLAIMED_REGION] = id, e.room, e.region
  return got
end

if want ~= '' then
  if #ARGV < CLAIM_REGIONS then return changes(take(want, nil) or none) end
  for i = CLAIM_REGIONS, #ARGV do
    local got = take(want, ARGV[i])
    if got then return changes(got) end
  end
  return changes(none)
end

-- One of the bucket's idle hosts of region r, chosen uniformly at random,
-- claimed, or nil. Uniformly: a host that keeps announcing itself must not
-- win every find. A few tries in case the index and the entry disagree
-- (an entry expired, or deleted by hand), each with the next number of a
-- small LCG.
local function from_region(r)
  for _ = 1, 4 do
    local n = call('ZLEXCOUNT', k.i, idle_lo(r), idle_hi(r))
    if n == 0 then break end
    local m = call('ZRANGEBYLEX', k.i, idle_lo(r), idle_hi(r), 'LIMIT', pick % n, 1)
    if #m == 0 then break end
    local got = take(string.sub(m[1], #r + 2), r)
    if got then return got end
    call('ZREM', k.i, m[1])
    touch(k, r)
    pick = (pick * 1103515245 + 12345) % 2147483648
  end
  return nil
end

-- Each region on its own: a key of the wrong type must not stop the others.
-- Only when no region had a host and one failed is the claim an error.
local failed
local tried = {}
for i = CLAIM_REGIONS, #ARGV do
  touch(k, ARGV[i])
  tried[ARGV[i]] = true
  local ok, got = pcall(from_region, ARGV[i])
  if ok and got then return changes(got) end
  if not ok then failed = failed or got end
end
if failed then return {err = 'claim.lua: ' .. tostring(failed)} end
-- No idle host of these regions here: the summary is told so again, in case
-- it lost the change that said it (it then stops sending finds here).
return changes(none, false, tried)
