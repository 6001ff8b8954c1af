-- hostreg release: undo a claim whose answer never reached its client (the
-- gateway timed out on Redis and answered 503, while the claim itself may
-- still have run, or may run later): the host goes back to idle at once
-- instead of staying busy for the whole lease.
-- ARGV (HR_SCRIPT_RELEASE_ARGS): key prefix, the claim id, the lease in ms.
-- Either order of the two is safe: a claim not run yet finds its id released
-- and takes nothing (claim.lua), one that ran is undone here, unless its host
-- confirmed it meanwhile (then the session is real).
-- Returns how many hosts went back to idle (1 or 0).
local key = pfx .. KEY_CLAIM .. ARGV[RELEASE_ID]
local host = call('GET', key)
local freed = 0
if not host then
  call('SET', key, '', 'PX', tonumber(ARGV[RELEASE_LEASE]))
elseif host ~= '' then
  call('SET', key, '', 'KEEPTTL')
  local h = host_key(host)
  local e = get_entry(h)
  if e and e.claim == ARGV[RELEASE_ID] and e.lease and e.status == STATUS_BUSY then
    unclaim(h, host, e)
    freed = 1
  end
end
return freed
