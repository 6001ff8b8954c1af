-- hostreg count: live hosts per region and status, for metrics.
-- ARGV[1] key prefix, ARGV[2..] regions.
-- Returns idle, busy counts for each region in order.
local pfx = ARGV[1]
local out = {}
for i = 2, #ARGV do
  out[#out + 1] = redis.call('ZCOUNT', pfx .. 'i:' .. ARGV[i] .. ':idle', now, '+inf')
  out[#out + 1] = redis.call('ZCOUNT', pfx .. 'i:' .. ARGV[i] .. ':busy', now, '+inf')
end
return out
