-- hostreg sweep: hosts claimed by a client whose lease ended without the host
-- confirming (a client that never connected, a legacy host that never sends
-- status updates) go back to idle.
-- ARGV (HR_SCRIPT_SWEEP_ARGS): key prefix, how many at most in one call.
-- Returns the number of hosts returned to idle.
local max = tonumber(ARGV[SWEEP_MAX])
local due = call('ZRANGEBYSCORE', claims_key, '-inf', now, 'LIMIT', 0, max)
local n = 0
for _, id in ipairs(due) do
  call('ZREM', claims_key, id)
  local h = host_key(id)
  local e = get_entry(h)
  if e and e.lease and tonumber(e.lease) <= now and e.status == STATUS_BUSY then
    unclaim(h, id, e)
    n = n + 1
  end
end
return n
