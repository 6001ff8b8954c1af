-- hostreg sweep, over some buckets: hosts claimed by a client whose lease
-- ended without the host confirming (a client that never connected, a legacy
-- host that never sends status updates) go back to idle, and what expired
-- (entries, tombstones) is removed.
-- KEYS: the buckets' keys. ARGV (HR_SCRIPT_SWEEP_ARGS): how many at most per
-- bucket, and '1' to report every region's summary state (entry.lua:
-- changes()), which repairs a summary that missed a change.
-- Returns the number of hosts returned to idle, then the summary changes.
local moving = slot_moving()
if moving then return moving end
local max, state = tonumber(ARGV[SWEEP_MAX]), ARGV[SWEEP_STATE] == '1'
local n = 0
for g = 0, math.floor(#KEYS / BKEYS) - 1 do
  local k = bucket(g)
  n = n + sweep_claims(k, max)
  trim(k, max)
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
