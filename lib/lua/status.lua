-- hostreg status update: set idle/busy on an existing host, atomically.
-- KEYS[1] host hash
-- ARGV[1] seq (see heartbeat.lua), ARGV[2] key prefix, ARGV[3] host id,
-- ARGV[4] new status.
-- A status update also settles a client's claim (see claim.lua).
-- Returns 1 (applied), 2 (duplicate) or 3 (unknown host). The TTL is left
-- alone: only heartbeats keep a host alive.
local seq, pfx, id, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ordered = seq ~= '00000000000000000000'
local cur = redis.call('HMGET', KEYS[1], 'sseq', 'region', 'status', 'lease')
if not cur[1] then return 3 end
if ordered and seq <= cur[1] then return 2 end
if cur[3] ~= status then
  local pttl = redis.call('PTTL', KEYS[1])
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  redis.call('ZREM', pfx .. 'i:' .. cur[2] .. ':' .. cur[3], id)
  redis.call('ZADD', pfx .. 'i:' .. cur[2] .. ':' .. status, now + pttl, id)
  redis.call('HSET', KEYS[1], 'status', status)
end
if ordered then redis.call('HSET', KEYS[1], 'sseq', seq) end
-- The host speaks for itself: a claim's lease (claim.lua) is settled, by a
-- busy that confirms it or an idle that ends the session.
if cur[4] then
  redis.call('HDEL', KEYS[1], 'lease')
  redis.call('ZREM', pfx .. 'claims', id)
end
return 1
