-- hostreg release: undo a claim whose answer never reached its client (the
-- gateway timed out on Redis and answered 503, while the claim itself may
-- still have run, or may run later): the host goes back to idle at once
-- instead of staying busy for the whole lease. On a host with several
-- slots, only the latest claim's release ends the lease (the slots of every
-- claim under it free again, as when it runs out: entry.lua: end_lease); an
-- earlier one's slot waits for the lease's end.
-- KEYS: the bucket's keys (the bucket the claim was sent to), then the claim
-- key. ARGV (HR_SCRIPT_RELEASE_ARGS): the claim id, the lease in ms.
-- Either order of the two is safe: a claim not run yet finds its id released
-- and takes nothing (claim.lua), one that ran is undone here, unless its host
-- confirmed it meanwhile (then the session is real).
-- Returns how many leases ended (1 or 0), then summary changes.
local moving = slot_moving()
if moving then return moving end
local k = bucket(0)
local key = KEYS[BKEYS + 1]
local v = call('GET', key)
local freed = 0
if not v then
  call('SET', key, '', 'PX', tonumber(ARGV[RELEASE_LEASE]))
elseif v ~= '' then
  call('SET', key, '', 'KEEPTTL')
  local ends, id = string.match(v, '^(%d+) (.*)$')
  local e = id and get_entry(k, id)
  if live(e) and lease_of(k, id) == tonumber(ends) then
    unclaim(k, id, e)
    freed = 1
  end
end
return changes({freed})
