-- hostreg list: the live hosts of some regions, from the index (no SCAN).
-- ARGV (HR_SCRIPT_LIST_ARGS): key prefix, status filter (a status name or ''
-- for every status), limit, then regions.
-- Returns a flat array, LISTED_STRIDE elements per host (LISTED_*): hostId,
-- roomId, region, status, ttl ms, claimed (0/1).
local want, limit = ARGV[LIST_STATUS], tonumber(ARGV[LIST_LIMIT])
local out = {}
local n = 0
local statuses = want == '' and STATUSES or {want}
for i = LIST_REGIONS, #ARGV do
  for _, st in ipairs(statuses) do
    if n >= limit then return out end
    local ids = call('ZRANGEBYSCORE', index_key(ARGV[i], st), now, '+inf',
                           'LIMIT', 0, limit - n)
    for _, id in ipairs(ids) do
      local h = host_key(id)
      local e = get_entry(h)
      local pttl = call('PTTL', h)
      -- Listed under the index that matches the entry only: a member left
      -- behind elsewhere (an entry replaced by hand or by an upgrade) is not
      -- listed twice.
      if e and pttl > 0 and e.status == st and e.region == ARGV[i] then
        local base = #out + 1
        out[base + LISTED_ID] = id
        out[base + LISTED_ROOM] = e.room
        out[base + LISTED_REGION] = e.region
        out[base + LISTED_STATUS] = e.status
        out[base + LISTED_TTL] = pttl
        out[base + LISTED_CLAIMED] = e.lease and 1 or 0
        n = n + 1
      end
    end
  end
end
return out
