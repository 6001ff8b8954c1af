-- hostreg requests: heartbeats, status updates and leaves, any number of them
-- in one atomic call (the daemon sends each receive batch as one call; a
-- single request is a batch of one). The rules of the registry live here.
--
-- KEYS: the keys of each bucket the batch touches (entry.lua: bucket()).
-- ARGV (lib/store/script.h, HR_SCRIPT_REQUESTS_ARGS): ttl in ms, most live
-- hosts per bucket (0: no cap); then REQ_STRIDE per request from
-- REQUESTS_FIRST (HR_SCRIPT_REQ_FIELDS): op (OP_*), seq, hostId, roomId,
-- region, status, slots ('' for capacity 1 with its slot free, else
-- "<capacity>.<availableSlots>"), and its bucket's place in KEYS (from 0).
-- seq: base 36, no leading zeros (entry.lua: newer); '0' = unordered (HTTP),
-- applied in arrival order and leaving the stored sequence alone.
-- Returns one RES_* per request: applied, duplicate (seq not newer than the
-- last applied: nothing changed), unknown host (status update), full (a new
-- host, and its bucket already holds the most it may), source full (a new
-- host in an OP_REFRESH request: its source speaks for the most hosts it
-- may); then the summary changes (entry.lua: changes()).
local moving = slot_moving()
if moving then return moving end
local ttl, cap = tonumber(ARGV[REQUESTS_TTL]), tonumber(ARGV[REQUESTS_BUCKET_CAP])
local UNORDERED = '0'
local expiry = now + ttl
local expiry36 = base36(expiry)

-- Live hosts of a bucket, counted once per call and only when a new host
-- asks: its entries (HLEN), and only when they reach the cap, the live ones
-- among them (expired entries never hold the cap shut).
local live_count = {}
local function room_for_one_more(k)
  if cap == 0 then return true end
  local n = live_count[num_of(k)]
  if not n then
    n = call('HLEN', k.e)
    if n >= cap then
      n = 0
      for _, v in ipairs(call('HVALS', k.e)) do
        local e = parse_entry(v)
        if e and e.expiry > now then n = n + 1 end
      end
    end
  end
  if n >= cap then
    live_count[num_of(k)] = n
    return false
  end
  live_count[num_of(k)] = n + 1
  return true
end

-- The seq of the host's last leave, while its tombstone lasts, or nil.
local function tomb_seq(k, id)
  local v = call('HGET', k.t, id)
  local seq, exp
  if v then seq, exp = string.match(v, '^(%w+) (%d+)$') end
  if seq and tonumber(exp) > now then return seq end
  return nil
end

-- The host's live entry, or nil (what is left of an expired one is removed).
local function live_entry(k, id)
  local e = get_entry(k, id)
  if e and not live(e) then
    remove_host(k, id, e)
    e = nil
  end
  return e
end

local function heartbeat(k, seq, id, room, region, status, may_create, slots)
  local ordered = seq ~= UNORDERED
  local cap, avail = 1, 1
  if slots ~= '' then
    local c, a = string.match(slots, '^(%d+)%.(%d+)$')
    cap, avail = tonumber(c), tonumber(a)
  end
  local e = live_entry(k, id)
  local old_region, was
  if e then
    if ordered and not newer(seq, e.hseq) then return RES_DUPLICATE end
    old_region, was = e.region, findable(e)
    -- A heartbeat never changes the status of an existing entry: only a
    -- status update, a claim, or the end of an unconfirmed claim's lease
    -- does. That end is seen here too, not only by sweep.lua. While a lease
    -- runs a claim holds a slot (free < cap), so most heartbeats (a host
    -- with every slot free) need not look.
    local lease = e.free < e.cap and lease_of(k, id)
    if lease and lease <= now then
      end_lease(k, id, e, false)
      lease = nil
    end
    -- The host's report of its free slots stands, except that within a
    -- lease it never gives back a slot a client claimed (entry.lua: slots).
    e.cap, e.rep = cap, avail
    e.free = lease and math.min(avail, e.free, cap - 1) or avail
    e.region, e.room = region, room
    if ordered then e.hseq = seq end
  else
    -- A late heartbeat must not resurrect a host that has left after it.
    local left = ordered and tomb_seq(k, id)
    if left and not newer(seq, left) then return RES_DUPLICATE end
    if not may_create then return RES_SOURCE_FULL end
    if not room_for_one_more(k) then return RES_FULL end
    e = {hseq = seq, sseq = seq, status = status, region = region, room = room, cap = cap,
         free = avail, rep = avail}
  end
  -- The find index first, the entry last: should a write fail (a key of the
  -- wrong type), what is left is at most an index member that readers check
  -- against the entry, never an entry the index misses. A refresh of an idle
  -- host that stays where it was (most heartbeats) leaves the index alone.
  reindex(k, id, e, was, old_region)
  put_entry(k, id, e, expiry, expiry36)
  return RES_APPLIED
end

-- Status updates apply only to a live entry and leave its expiry alone. A
-- client's claim (claim.lua) is the host's to confirm: its `busy` confirms
-- it (the session runs, the lease is gone, and its `idle` afterwards ends
-- the session), while any other status before that changes only the seq: the
-- claim stands until the host confirms it or its lease runs out (sweep.lua),
-- so a host that keeps saying idle can neither drop the client it was given
-- nor win the next find with it.
local function status_update(k, seq, id, status)
  local ordered = seq ~= UNORDERED
  local e = live_entry(k, id)
  if not e then return RES_UNKNOWN_HOST end
  if ordered and not newer(seq, e.sseq) then return RES_DUPLICATE end
  local lease = lease_of(k, id)
  if lease and status ~= STATUS_BUSY then
    if ordered then
      e.sseq = seq
      put_entry(k, id, e)
    end
    return RES_APPLIED
  end
  local was = findable(e)
  local changed = ordered or lease or e.status ~= status
  if lease then end_lease(k, id, e, true) end
  e.status = status
  if ordered then e.sseq = seq end
  reindex(k, id, e, was, e.region)
  if changed then put_entry(k, id, e) end
  return RES_APPLIED
end

-- A leave removes the entry and keeps a tombstone with its seq for one TTL,
-- so that a heartbeat sent before the leave but delivered after it cannot
-- bring the host back. Leaving a host that is not there is fine, and writes
-- nothing: a tombstone per invented hostId would be memory without a bound
-- (the cost: a host's very first heartbeat overtaken by its leave registers
-- it for one TTL).
local function leave(k, seq, id)
  local ordered = seq ~= UNORDERED
  local e = live_entry(k, id)
  if not e then
    -- Gone already (a retransmitted leave, or expired): a duplicate when the
    -- tombstone says so, fine either way.
    local tomb = ordered and tomb_seq(k, id)
    if tomb and not newer(seq, tomb) then return RES_DUPLICATE end
    return RES_APPLIED
  end
  if ordered and (not newer(seq, e.hseq) or not newer(seq, e.sseq)) then return RES_DUPLICATE end
  remove_host(k, id, e)
  if ordered then
    -- Never lower a tombstone (an entry created by an unordered HTTP
    -- heartbeat did not check it).
    local tomb = tomb_seq(k, id)
    if not tomb or newer(seq, tomb) then
      call('HSET', k.t, id, seq .. ' ' .. string.format('%.0f', now + ttl))
    end
  end
  return RES_APPLIED
end

-- One request of the batch, by op.
local buckets = {}
local function apply(i)
  local op, seq, id = ARGV[i + REQ_OP], ARGV[i + REQ_SEQ], ARGV[i + REQ_HOST]
  local g = tonumber(ARGV[i + REQ_BUCKET])
  local k = buckets[g]
  if not k then
    k = bucket(g)
    buckets[g] = k
  end
  if op == OP_HEARTBEAT or op == OP_REFRESH then
    return heartbeat(k, seq, id, ARGV[i + REQ_ROOM], ARGV[i + REQ_REGION], ARGV[i + REQ_STATUS],
                     op == OP_HEARTBEAT, ARGV[i + REQ_SLOTS])
  elseif op == OP_STATUS then
    return status_update(k, seq, id, ARGV[i + REQ_STATUS])
  elseif op == OP_LEAVE then
    return leave(k, seq, id)
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
return changes(out)
