-- hostreg requests: heartbeats, status updates and leaves, any number of them
-- in one atomic call (the daemon sends each receive batch as one call; a
-- single request is a batch of one). The rules of the registry live here.
--
-- ARGV[1] key prefix, ARGV[2] ttl in ms, ARGV[3] most live hosts (0: no
-- cap), ARGV[4] the configured regions, comma-separated (to count them),
-- then 6 per request:
--   op ('h' heartbeat, 'r' heartbeat that may refresh but not create, 's'
--   status, 'l' leave), seq, hostId, roomId, region, status
-- seq: decimal, no leading zeros (entry.lua: newer); '0' = unordered (HTTP),
-- applied in arrival order and leaving the stored sequence alone.
-- Returns one integer per request: 1 applied, 2 duplicate (seq not newer than
-- the last applied: nothing changed), 3 unknown host (status update), 4 full
-- (a new host, and the registry already holds the most it may), 5 source full
-- (a new host in an 'r' request: its source speaks for the most hosts it may).
--
-- Keys (prefix hr:):
--   h:<id>  the host's entry (entry.lua); TTL = ttl
--   t:<id>  the seq of the host's last leave, for one TTL
--   i:<region>:<status>  sorted set of hostIds scored by their entry's expiry
--           in ms: a reader asking for scores >= now never sees an expired host
--   claims  sorted set of claimed hostIds scored by their lease's end
local pfx, ttl, cap, regions = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local UNORDERED = '0'
local expiry = now + ttl
local touched = {} -- index keys written: expired members trimmed once, at the end

-- Removes up to 64 expired members of an index. Bounded: after a mass expiry
-- (a region's hosts all gone at once) an unbounded ZREMRANGEBYSCORE would hold
-- Redis for as long as it takes to drop them all; readers skip expired members
-- by score anyway, so the backlog can drain a little per call.
local function trim(idx)
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. now, 'LIMIT', 0, 64)
  if #old > 0 then redis.call('ZREM', idx, unpack(old)) end
end

-- Live hosts, counted once per call and only when a new host asks: the
-- members of the indexes whose entries have not expired (ZCOUNT from now, so
-- a backlog of expired members never holds the cap shut).
local live
local function room_for_one_more()
  if cap == 0 then return true end
  if not live then
    live = 0
    for r in string.gmatch(regions, '[^,]+') do
      live = live + redis.call('ZCOUNT', pfx .. 'i:' .. r .. ':idle', now, '+inf') +
             redis.call('ZCOUNT', pfx .. 'i:' .. r .. ':busy', now, '+inf')
    end
  end
  if live >= cap then return false end
  live = live + 1
  return true
end

local function heartbeat(seq, id, room, region, status, may_create)
  local h = pfx .. 'h:' .. id
  local ordered = seq ~= UNORDERED
  local e = get_entry(h)
  if e then
    if ordered and not newer(seq, e.hseq) then return 2 end
    -- A heartbeat never changes the status of an existing entry: only a
    -- status update (or a claim) does.
    if e.region ~= region then
      redis.call('ZREM', pfx .. 'i:' .. e.region .. ':' .. e.status, id)
      e.region = region
    end
    e.room = room
    if ordered then e.hseq = seq end
  else
    if ordered then
      -- A late heartbeat must not resurrect a host that has left after it.
      local tomb = tomb_seq(redis.call('GET', pfx .. 't:' .. id))
      if tomb and not newer(seq, tomb) then return 2 end
    end
    if not may_create then return 5 end
    if not room_for_one_more() then return 4 end
    e = {hseq = seq, sseq = seq, status = status, region = region, room = room}
  end
  put_entry(h, e, ttl)
  local idx = pfx .. 'i:' .. region .. ':' .. e.status
  redis.call('ZADD', idx, expiry, id)
  touched[idx] = true
  return 1
end

-- Status updates apply only to a live entry and leave its TTL alone. One from
-- the host also settles a client's claim (claim.lua): a busy confirms it, an
-- idle ends the session.
local function status_update(seq, id, status)
  local h = pfx .. 'h:' .. id
  local ordered = seq ~= UNORDERED
  local e = get_entry(h)
  if not e then return 3 end
  if ordered and not newer(seq, e.sseq) then return 2 end
  local changed = ordered or e.lease
  if e.status ~= status then
    local pttl = redis.call('PTTL', h)
    local idx = pfx .. 'i:' .. e.region .. ':' .. status
    redis.call('ZREM', pfx .. 'i:' .. e.region .. ':' .. e.status, id)
    redis.call('ZADD', idx, now + pttl, id)
    touched[idx] = true
    e.status = status
    changed = true
  end
  if ordered then e.sseq = seq end
  if e.lease then
    e.lease = nil
    redis.call('ZREM', pfx .. 'claims', id)
  end
  if changed then put_entry(h, e) end
  return 1
end

-- A leave removes the entry and keeps a tombstone with its seq for one TTL,
-- so that a heartbeat sent before the leave but delivered after it cannot
-- bring the host back. Leaving a host that is not there is fine, and writes
-- nothing: a tombstone per invented hostId would be memory without a bound
-- (the cost: a host's very first heartbeat overtaken by its leave registers
-- it for one TTL).
local function leave(seq, id)
  local h = pfx .. 'h:' .. id
  local ordered = seq ~= UNORDERED
  local e = get_entry(h)
  if not e then
    -- Gone already (a retransmitted leave, or expired): a duplicate when the
    -- tombstone says so, fine either way.
    local tomb = ordered and tomb_seq(redis.call('GET', pfx .. 't:' .. id))
    if tomb and not newer(seq, tomb) then return 2 end
    return 1
  end
  if ordered and (not newer(seq, e.hseq) or not newer(seq, e.sseq)) then return 2 end
  redis.call('DEL', h)
  redis.call('ZREM', pfx .. 'i:' .. e.region .. ':' .. e.status, id)
  redis.call('ZREM', pfx .. 'claims', id)
  if ordered then
    -- Never lower a tombstone (an entry created by an unordered HTTP
    -- heartbeat did not check it).
    local tk = pfx .. 't:' .. id
    local tomb = tomb_seq(redis.call('GET', tk))
    if not tomb or newer(seq, tomb) then redis.call('SET', tk, seq, 'PX', ttl) end
  end
  return 1
end

local out = {}
for i = 5, #ARGV - 5, 6 do
  local op = ARGV[i]
  if op == 'h' or op == 'r' then
    out[#out + 1] = heartbeat(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
                              op == 'h')
  elseif op == 's' then
    out[#out + 1] = status_update(ARGV[i + 1], ARGV[i + 2], ARGV[i + 5])
  else
    out[#out + 1] = leave(ARGV[i + 1], ARGV[i + 2])
  end
end
for idx in pairs(touched) do trim(idx) end
return out
