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
  local ids = call('ZRANGEBYSCORE', k.x, '(' .. now, '+inf')
  -- HMGET a thousand at a time: unpack() has a limit (about 8000).
  for from = 1, #ids, 1000 do
    local vs = call('HMGET', k.e, unpack(ids, from, math.min(from + 999, #ids)))
    for _, v in ipairs(vs) do
      local status, region
      if v then status, region = string.match(v, '^%d+ %d+ (%a+) (%S+) ') end
      local base = region and at[region]
      if base and place[status] then out[base + place[status]] = out[base + place[status]] + 1 end
    end
  end
end
return out
