-- hostreg sweep, over some buckets: hosts claimed by a client whose lease
-- ended without the host confirming (a client that never connected, a legacy
-- host that never sends status updates) go back to idle, expired tombstones
-- are removed, and, with TRIM, expired entries (which means reading each
-- bucket whole: the store asks for it on a slice of the buckets per round).
-- KEYS: the buckets' keys. ARGV (HR_SCRIPT_SWEEP_ARGS): how many claims and
-- expired entries at most in this call, all buckets together (after a mass
-- expiry a bound per bucket would still hold Redis for as long as it takes
-- a few hundred buckets; what is left waits for the next sweep, and readers
-- skip it anyway), and '1' to report every region's summary state
-- (entry.lua: changes()), which repairs a summary that missed a change.
-- Returns the number of hosts returned to idle, then the summary changes.
local moving = slot_moving()
if moving then return moving end
local budget, state = tonumber(ARGV[SWEEP_MAX]), ARGV[SWEEP_STATE] == '1'
local trimming = ARGV[SWEEP_TRIM] == '1'
local n = 0
for g = 0, math.floor(#KEYS / BKEYS) - 1 do
  local k = bucket(g)
  if budget > 0 then
    local freed, seen = sweep_claims(k, budget)
    n = n + freed
    budget = budget - seen
  end
  if trimming and budget > 0 then budget = budget - trim(k, budget) end
  if call('HLEN', k.t) > 0 then
    local tombs = call('HGETALL', k.t)
    for j = 1, #tombs, 2 do
      local exp = string.match(tombs[j + 1], ' (%d+)$')
      if not exp or tonumber(exp) <= now then call('HDEL', k.t, tombs[j]) end
    end
  end
  if state then touch(k, nil) end
end
return changes({n}, state)
