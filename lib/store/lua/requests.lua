-- hostreg requests: heartbeats, status updates and leaves, any number of them
-- in one atomic call (the daemon sends each receive batch as one call; a
-- single request is a batch of one). The rules of the registry live here.
--
-- ARGV (lib/store/script.h, HR_SCRIPT_REQUESTS_ARGS): key prefix, ttl in ms, most
-- live hosts (0: no cap), the configured regions comma-separated (to count
-- them); then REQ_STRIDE per request from REQUESTS_FIRST
-- (HR_SCRIPT_REQ_FIELDS): op (OP_*), seq, hostId, roomId, region, status.
-- seq: decimal, no leading zeros (entry.lua: newer); '0' = unordered (HTTP),
-- applied in arrival order and leaving the stored sequence alone.
-- Returns one RES_* per request: applied, duplicate (seq not newer than the
-- last applied: nothing changed), unknown host (status update), full (a new
-- host, and the registry already holds the most it may), source full (a new
-- host in an OP_REFRESH request: its source speaks for the most hosts it may).
--
-- Keys (entry.lua):
--   host_key(id)   the host's entry (entry.lua); TTL = ttl
--   tomb_key(id)   the seq of the host's last leave, for one TTL
--   index_key(region, status)  sorted set of hostIds scored by their entry's
--           expiry in ms: a reader asking for scores >= now never sees an
--           expired host
--   claims_key     sorted set of claimed hostIds scored by their lease's end
local ttl, cap, regions =
  tonumber(ARGV[REQUESTS_TTL]), tonumber(ARGV[REQUESTS_MAX_HOSTS]), ARGV[REQUESTS_REGIONS]
local UNORDERED = '0'
local expiry = now + ttl
local touched = {} -- index keys written: expired members trimmed once, at the end

-- Live hosts, counted once per call and only when a new host asks: the
-- members of the indexes whose entries have not expired (ZCOUNT from now, so
-- a backlog of expired members never holds the cap shut).
local live
local function room_for_one_more()
  if cap == 0 then return true end
  if not live then
    live = 0
    for r in string.gmatch(regions, '[^,]+') do
      for _, st in ipairs(STATUSES) do
        -- An index that is not a sorted set (a key of ours overwritten by
        -- something else) holds no host we could count: it must not stop
        -- new hosts of every region. The request that writes it fails.
        local n = redis.pcall('ZCOUNT', index_key(r, st), now, '+inf')
        if type(n) == 'number' then live = live + n end
      end
    end
  end
  if live >= cap then return false end
  live = live + 1
  return true
end

local function heartbeat(seq, id, room, region, status, may_create)
  local h = host_key(id)
  local moved_from -- the index of the region it leaves, if it changes region
  local ordered = seq ~= UNORDERED
  local e = get_entry(h)
  if e then
    if ordered and not newer(seq, e.hseq) then return RES_DUPLICATE end
    -- A heartbeat never changes the status of an existing entry: only a
    -- status update, a claim, or the end of an unconfirmed claim's lease
    -- does. That end is seen here too, not only by sweep.lua: should the
    -- claims record be lost (deleted by hand, an older build), the host's
    -- next heartbeat still frees it.
    if e.lease and tonumber(e.lease) <= now and e.status == STATUS_BUSY then
      moved_from = index_key(e.region, e.status)
      e.status, e.lease, e.claim = STATUS_IDLE, nil, nil
      call('ZREM', claims_key, id)
    end
    if e.region ~= region then
      moved_from = moved_from or index_key(e.region, e.status)
      e.region = region
    end
    e.room = room
    if ordered then e.hseq = seq end
  else
    if ordered then
      -- A late heartbeat must not resurrect a host that has left after it.
      local tomb = tomb_seq(call('GET', tomb_key(id)))
      if tomb and not newer(seq, tomb) then return RES_DUPLICATE end
    end
    if not may_create then return RES_SOURCE_FULL end
    if not room_for_one_more() then return RES_FULL end
    e = {hseq = seq, sseq = seq, status = status, region = region, room = room}
  end
  -- The index first, the entry last: should a write fail (a key of the
  -- wrong type), what is left is at most an index member that readers check
  -- against the entry, never an entry no index finds (which a retransmission
  -- would then take as a duplicate).
  local idx = index_key(region, e.status)
  call('ZADD', idx, expiry, id)
  touched[idx] = true
  if moved_from then call('ZREM', moved_from, id) end
  put_entry(h, e, ttl)
  return RES_APPLIED
end

-- Status updates apply only to a live entry and leave its TTL alone. A
-- client's claim (claim.lua) is the host's to confirm: its `busy` confirms
-- it (the session runs, the lease is gone, and its `idle` afterwards ends
-- the session), while any other status before that changes only the seq: the
-- claim stands until the host confirms it or its lease runs out (sweep.lua),
-- so a host that keeps saying idle can neither drop the client it was given
-- nor win the next find with it.
local function status_update(seq, id, status)
  local h = host_key(id)
  local ordered = seq ~= UNORDERED
  local e = get_entry(h)
  if not e then return RES_UNKNOWN_HOST end
  if ordered and not newer(seq, e.sseq) then return RES_DUPLICATE end
  if e.lease and status ~= STATUS_BUSY then
    if ordered then
      e.sseq = seq
      put_entry(h, e)
    end
    return RES_APPLIED
  end
  local changed = ordered or e.lease
  if e.status ~= status then
    local pttl = call('PTTL', h)
    local idx = index_key(e.region, status)
    call('ZADD', idx, now + pttl, id) -- the new index first, as in heartbeat()
    call('ZREM', index_key(e.region, e.status), id)
    touched[idx] = true
    e.status = status
    changed = true
  end
  if ordered then e.sseq = seq end
  if e.lease then
    e.lease, e.claim = nil, nil
    call('ZREM', claims_key, id)
  end
  if changed then put_entry(h, e) end
  return RES_APPLIED
end

-- A leave removes the entry and keeps a tombstone with its seq for one TTL,
-- so that a heartbeat sent before the leave but delivered after it cannot
-- bring the host back. Leaving a host that is not there is fine, and writes
-- nothing: a tombstone per invented hostId would be memory without a bound
-- (the cost: a host's very first heartbeat overtaken by its leave registers
-- it for one TTL).
local function leave(seq, id)
  local h = host_key(id)
  local ordered = seq ~= UNORDERED
  local e = get_entry(h)
  if not e then
    -- Gone already (a retransmitted leave, or expired): a duplicate when the
    -- tombstone says so, fine either way.
    local tomb = ordered and tomb_seq(call('GET', tomb_key(id)))
    if tomb and not newer(seq, tomb) then return RES_DUPLICATE end
    return RES_APPLIED
  end
  if ordered and (not newer(seq, e.hseq) or not newer(seq, e.sseq)) then return RES_DUPLICATE end
  call('DEL', h)
  call('ZREM', index_key(e.region, e.status), id)
  call('ZREM', claims_key, id)
  if ordered then
    -- Never lower a tombstone (an entry created by an unordered HTTP
    -- heartbeat did not check it).
    local tk = tomb_key(id)
    local tomb = tomb_seq(call('GET', tk))
    if not tomb or newer(seq, tomb) then call('SET', tk, seq, 'PX', ttl) end
  end
  return RES_APPLIED
end

-- One request of the batch, by op.
local function apply(i)
  local op, seq, id = ARGV[i + REQ_OP], ARGV[i + REQ_SEQ], ARGV[i + REQ_HOST]
  if op == OP_HEARTBEAT or op == OP_REFRESH then
    return heartbeat(seq, id, ARGV[i + REQ_ROOM], ARGV[i + REQ_REGION], ARGV[i + REQ_STATUS],
                     op == OP_HEARTBEAT)
  elseif op == OP_STATUS then
    return status_update(seq, id, ARGV[i + REQ_STATUS])
  elseif op == OP_LEAVE then
    return leave(seq, id)
  end
  -- A programmer's error (an op of lib/store/script.h with no code here):
  -- fail it rather than guess, least of all as a leave.
  error('unknown op ' .. tostring(op), 0)
end

-- A request that fails (a key of the wrong type: entry.lua's call names it)
-- fails alone: its element of the reply is the error, the others go on.
local out = {}
for i = REQUESTS_FIRST, #ARGV - REQ_STRIDE + 1, REQ_STRIDE do
  local ok, res = pcall(apply, i)
  out[#out + 1] = ok and res or {err = 'requests.lua: ' .. tostring(res)}
end
for idx in pairs(touched) do pcall(trim, idx) end
return out
