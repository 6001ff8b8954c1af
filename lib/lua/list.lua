-- hostreg list: the live hosts of some regions, from the index (no SCAN).
-- ARGV[1] key prefix, ARGV[2] status filter ('idle', 'busy' or '' for both),
-- ARGV[3] limit, ARGV[4..] regions.
-- Returns a flat array: hostId, roomId, region, status, ttl ms, claimed (0/1), ...
local pfx, want, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
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
      local cur = redis.call('HMGET', h, 'room', 'region', 'status', 'lease')
      local pttl = redis.call('PTTL', h)
      if cur[1] and pttl > 0 then
        out[#out + 1] = id
        out[#out + 1] = cur[1]
        out[#out + 1] = cur[2]
        out[#out + 1] = cur[3]
        out[#out + 1] = pttl
        out[#out + 1] = cur[4] and 1 or 0
        n = n + 1
      end
    end
  end
end
return out
