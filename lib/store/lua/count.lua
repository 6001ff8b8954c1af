-- hostreg count: live hosts per region and status over some buckets, for
-- metrics. KEYS: the buckets' keys. ARGV (HR_SCRIPT_COUNT_ARGS): regions.
-- Returns, for each region in order, one count per status of STATUSES.
local at = {} -- region -> its first place in out
local out = {}
for i = COUNT_REGIONS, #ARGV do
  at[ARGV[i]] = #out
  for _ = 1, #STATUSES do out[#out + 1] = 0 end
end
local place = {}
for j, st in ipairs(STATUSES) do place[st] = j end
for g = 0, math.floor(#KEYS / BKEYS) - 1 do
  local k = bucket(g)
  for _, v in ipairs(call('HVALS', k.e)) do
    local e = parse_entry(v)
    local base = e and e.expiry > now and at[e.region]
    if base and place[e.status] then out[base + place[e.status]] = out[base + place[e.status]] + 1 end
  end
end
return out
