-- hostreg heartbeat: create or refresh one host, atomically.
-- KEYS[1] host hash, KEYS[2] the host's leave tombstone
-- ARGV[1] seq (20 digits, zero-padded: compared as strings, exact for 64 bits;
--         all zeros = unordered), ARGV[2] key prefix, ARGV[3] host id,
-- ARGV[4] roomId, ARGV[5] region, ARGV[6] status if this creates the entry,
-- ARGV[7] ttl in ms.
-- Returns 1 (applied) or 2 (duplicate: seq not newer, nothing changed).
-- Index: one sorted set per region and status, member host id, score the
-- entry's expiry in ms, so a reader that asks for scores >= now never sees an
-- expired host, and each write trims what has expired.
local seq, pfx, id, room, region, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl = tonumber(ARGV[7])
local ordered = seq ~= '00000000000000000000'
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expiry = now + ttl

local cur = redis.call('HMGET', KEYS[1], 'hseq', 'region', 'status', 'room')
if cur[1] then
  if ordered and seq <= cur[1] then return 2 end
  -- A heartbeat never changes the status of an existing entry: only a
  -- status update (or a claim) does.
  status = cur[3]
  if cur[2] ~= region then
    redis.call('ZREM', pfx .. 'i:' .. cur[2] .. ':' .. status, id)
    redis.call('HSET', KEYS[1], 'region', region)
  end
  if cur[4] ~= room then redis.call('HSET', KEYS[1], 'room', room) end
  if ordered then redis.call('HSET', KEYS[1], 'hseq', seq) end
else
  if ordered then
    local tomb = redis.call('GET', KEYS[2])
    -- A late heartbeat must not resurrect a host that has left after it.
    if tomb and seq <= tomb then return 2 end
  end
  redis.call('HSET', KEYS[1], 'room', room, 'region', region, 'status', status,
             'hseq', seq, 'sseq', seq)
end
redis.call('PEXPIRE', KEYS[1], ttl)
local idx = pfx .. 'i:' .. region .. ':' .. status
redis.call('ZADD', idx, expiry, id)
redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. now)
return 1
