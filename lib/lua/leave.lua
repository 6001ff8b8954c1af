-- hostreg leave: remove a host, atomically.
-- KEYS[1] host hash, KEYS[2] the host's leave tombstone
-- ARGV[1] seq (see heartbeat.lua), ARGV[2] key prefix, ARGV[3] host id,
-- ARGV[4] ttl in ms (how long the tombstone is kept).
-- Returns 1 (removed, or was not there) or 2 (duplicate: a newer request
-- was applied, the host is still alive).
-- The tombstone remembers the leave's seq for one TTL, so that a heartbeat
-- sent before the leave but delivered after it cannot bring the host back.
local seq, pfx, id, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ordered = seq ~= '00000000000000000000'
local cur = redis.call('HMGET', KEYS[1], 'hseq', 'sseq', 'region', 'status')
if cur[1] then
  if ordered and (seq <= cur[1] or seq <= cur[2]) then return 2 end
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', pfx .. 'i:' .. cur[3] .. ':' .. cur[4], id)
  redis.call('ZREM', pfx .. 'claims', id)
end
if ordered then
  local tomb = redis.call('GET', KEYS[2])
  if not tomb or seq > tomb then redis.call('SET', KEYS[2], seq, 'PX', ttl) end
end
return 1
