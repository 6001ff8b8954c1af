-- hostreg regions, in any-region mode (--regions '*'): the regions the
-- registry knows, so that a find naming no region, a list and the metrics
-- can go through them, and a cap (--max-regions) keeps their indexes
-- bounded. KEYS[1]: "<prefix>regions", a sorted set: region -> when a
-- program last saw a heartbeat name it, ms on Redis's clock. ARGV
-- (HR_SCRIPT_REGIONS_ARGS): the most regions, the ms after which a region
-- nobody has named makes room for a new one (it has no live host then),
-- then regions to admit, or to mark seen when known.
-- Returns one integer per region given (1: known now, 0: refused, the
-- registry knows the most it may), then the name of every region known.
local moving = slot_moving()
if moving then return moving end
local key = KEYS[1]
local max, stale = tonumber(ARGV[REGIONS_MAX]), tonumber(ARGV[REGIONS_STALE])
local out = {}
local n = call('ZCARD', key)
local pruned = false
for i = REGIONS_REGIONS, #ARGV do
  local r = ARGV[i]
  if call('ZSCORE', key, r) then
    call('ZADD', key, now, r)
    out[#out + 1] = 1
  else
    if n >= max and not pruned then
      n = n - call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.0f', now - stale))
      pruned = true
    end
    if n < max then
      call('ZADD', key, now, r)
      n = n + 1
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
end
for _, r in ipairs(call('ZRANGEBYSCORE', key, string.format('%.0f', now - stale), '+inf')) do
  out[#out + 1] = r
end
return out
