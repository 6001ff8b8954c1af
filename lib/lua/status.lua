-- hostreg status update: set idle/busy on an existing host, atomically.
-- KEYS[1] host hash
-- ARGV[1] seq (see heartbeat.lua), ARGV[2] index key prefix, ARGV[3] host id,
-- ARGV[4] new status.
-- Returns 1 (applied), 2 (duplicate) or 3 (unknown host). The TTL is left
-- alone: only heartbeats keep a host alive.
local seq, pfx, id, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ordered = seq ~= '00000000000000000000'
local cur = redis.call('HMGET', KEYS[1], 'sseq', 'region', 'status')
if not cur[1] then return 3 end
if ordered and seq <= cur[1] then return 2 end
if cur[3] ~= status then
  local pttl = redis.call('PTTL', KEYS[1])
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  redis.call('ZREM', pfx .. cur[2] .. ':' .. cur[3], id)
  redis.call('ZADD', pfx .. cur[2] .. ':' .. status, now + pttl, id)
  redis.call('HSET', KEYS[1], 'status', status)
end
if ordered then redis.call('HSET', KEYS[1], 'sseq', seq) end
return 1
