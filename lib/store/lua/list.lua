-- hostreg list: the live hosts of some regions, over some buckets.
-- KEYS: the buckets' keys. ARGV (HR_SCRIPT_LIST_ARGS): status filter (a
-- status name or '' for every status), limit, then regions.
-- Returns a flat array, LISTED_STRIDE elements per host (LISTED_*): hostId,
-- roomId, region, status, ttl ms, claimed (0/1), capacity, free slots.
local want, limit = ARGV[LIST_STATUS], tonumber(ARGV[LIST_LIMIT])
local regions = {}
for i = LIST_REGIONS, #ARGV do regions[ARGV[i]] = true end
local out = {}
local n = 0
for g = 0, math.floor(#KEYS / BKEYS) - 1 do
  if n >= limit then break end
  local k = bucket(g)
  local all = call('HGETALL', k.e)
  for j = 1, #all, 2 do
    if n >= limit then break end
    local id = all[j]
    local e = parse_entry(all[j + 1])
    if live(e) and regions[e.region] and (want == '' or e.status == want) then
      local base = #out + 1
      out[base + LISTED_ID] = id
      out[base + LISTED_ROOM] = e.room
      out[base + LISTED_REGION] = e.region
      out[base + LISTED_STATUS] = e.status
      out[base + LISTED_TTL] = e.expiry - now
      out[base + LISTED_CLAIMED] = (e.status == STATUS_BUSY and lease_of(k, id)) and 1 or 0
      out[base + LISTED_CAPACITY] = e.cap
      out[base + LISTED_FREE] = e.free
      n = n + 1
    end
  end
end
return out
