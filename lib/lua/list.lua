-- hostreg list: the live hosts of some regions, from the index (no SCAN).
-- ARGV[1] key prefix, ARGV[2] status filter ('idle', 'busy' or '' for both),
-- ARGV[3] limit, ARGV[4..] regions.
-- Returns a flat array: hostId, roomId, region, status, ttl ms, claimed (0/1), ...
local pfx, want, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local n = 0
local statuses = want == '' and {'idle', 'busy'} or {want}
for i = 4, #ARGV do
  for _, st in ipairs(statuses) do
    if n >= limit then return out end
    local ids = redis.call('ZRANGEBYSCORE', pfx .. 'i:' .. ARGV[i] .. ':' .. st, now, '+inf',
                           'LIMIT', 0, limit - n)
    for _, id in ipairs(ids) do
      local h = pfx .. 'h:' .. id
      local e = get_entry(h)
      local pttl = redis.call('PTTL', h)
      -- Listed under the index that matches the entry only: a member left
      -- behind elsewhere (an entry replaced by hand or by an upgrade) is not
      -- listed twice.
      if e and pttl > 0 and e.status == st and e.region == ARGV[i] then
        out[#out + 1] = id
        out[#out + 1] = e.room
        out[#out + 1] = e.region
        out[#out + 1] = e.status
        out[#out + 1] = pttl
        out[#out + 1] = e.lease and 1 or 0
        n = n + 1
      end
    end
  end
end
return out
