-- hostreg count: live hosts per region and status, for metrics.
-- ARGV (HR_SCRIPT_COUNT_ARGS): key prefix, then regions.
-- Returns, for each region in order, one count per status of STATUSES.
local out = {}
for i = COUNT_REGIONS, #ARGV do
  for _, st in ipairs(STATUSES) do
    out[#out + 1] = call('ZCOUNT', index_key(ARGV[i], st), now, '+inf')
  end
end
return out
