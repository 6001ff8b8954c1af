-- hostreg, storage layout 3: what every script below shares (lib/store/script_gen.c
-- puts this in front of each of them, after the constants of lib/store/script.h:
-- STATUS_*, KEY_*, BKEY_*, OP_*, RES_*, the ARGV positions and reply layouts).
--
-- A host lives in one bucket (docs/design/layout-v2.md), and each bucket's
-- keys come in KEYS, BKEYS of them per bucket (bucket(g) below):
--   e  hash: hostId -> "<hseq> <sseq> <s>[<slots>] <region> <room> <expiry>":
--      s is the status's first letter, slots "<capacity>.<free>.<reported>"
--      (left out while all three are 1: most hosts), expiry in ms, base 36
--      (put_entry()); an entry is live while now < expiry. Every reader checks, so an expired
--      host is never answered, and sweep.lua removes what expired (trim()).
--      The expiry in the entry rather than in a sorted set of its own: a
--      refresh is one HGET and one HSET, and a host costs one field less
--   i  zset, scores 0: "<region> <hostId>" for each host a find may take
--      (findable(): idle, with a free slot), so that a region's are one
--      lexicographic range
--   c  zset: claimed hostId -> the end of its claim's lease in ms
--   t  hash: hostId -> "<seq> <expiry ms>": its last leave, for one TTL
--   m  hash: region -> summary epoch, odd while the bucket is listed in the
--      region's summary of buckets that may hold idle hosts
-- Sequence numbers (hseq and sseq: of the last heartbeat and the last status
-- update applied; a tombstone's) are base 36 (digits, then lower-case
-- letters) without leading zeros, as the store sends them ('0': none, HTTP):
-- 13 characters at most for 64 bits, so that an entry with the usual ids
-- fits Redis's compact encoding (hash-max-listpack-value, 64 bytes).
-- HostIds are stored forms (lib/store/layout.c): bytes this code never looks
-- into. Rooms and regions never hold a space.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

-- redis.call on a key, except that an error names the key (WRONGTYPE says
-- what went wrong, not where): a key of the wrong type at a name of ours,
-- written by hand or by another program, is then found in one log line. The
-- requests script fails the one request that met it (pcall), not its batch.
local function call(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then error(cmd .. ' ' .. key .. ': ' .. r.err, 0) end
  return r
end

-- On a Redis Cluster, while the slot of a script's keys is being migrated
-- away from this node (MIGRATING), Redis runs the script here only when each
-- key it declares is still here; but a key the script empties itself (a last
-- field deleted) and then touches again counts as moved, and the script
-- would fail there, in the middle, after its first writes. So a script that
-- writes asks first, with a key of its hash tag that never exists: Redis
-- refuses to read it only while the slot is being moved (or is not this
-- node's), never on a single Redis or a slot at rest. The script then writes
-- nothing and answers TRYAGAIN, which a cluster client (lib/store/cluster.c)
-- sends again after a pause, as it does Redis's own. The error, or nil.
local function slot_moving()
  if not KEYS[1] then return nil end
  local r = redis.pcall('GET', KEYS[1] .. '~')
  if type(r) == 'table' and r.err then
    return {err = 'TRYAGAIN the slot of ' .. KEYS[1] .. ' is being migrated (' .. r.err .. ')'}
  end
  return nil
end

-- Bucket g's keys (g from 0).
local function bucket(g)
  local base = g * BKEYS
  return {e = KEYS[base + BKEY_ENTRIES], i = KEYS[base + BKEY_IDLE],
          c = KEYS[base + BKEY_CLAIMS], t = KEYS[base + BKEY_TOMBS],
          m = KEYS[base + BKEY_REGIONS]}
end

-- Bucket k's number, from its hash tag (read when first needed: most
-- requests never need it).
local function num_of(k)
  if not k.num then k.num = string.match(k.e, '{(%d+)}[^{}]*$') end
  return k.num
end

-- The idle range of a region in a bucket's i: members "<region> <id>".
local function idle_member(region, id) return region .. ' ' .. id end
local function idle_lo(region) return '[' .. region .. ' ' end
local function idle_hi(region) return '(' .. region .. '!' end

-- Regions whose idle hosts may have changed, per bucket: summary changes are
-- worked out once, at the end (changes()).
local touched = {}
local function touch(k, region)
  local b = touched[num_of(k)]
  if not b then
    b = {k = k, regions = {}}
    touched[num_of(k)] = b
  end
  if region then b.regions[region] = true end -- nil: the bucket only (changes(_, true))
end

-- Statuses are stored as their first letter (script_gen.c checks that
-- those differ).
local STATUS_OF = {}
for _, st in ipairs(STATUSES) do STATUS_OF[string.sub(st, 1, 1)] = st end

-- n >= 0, an integer below 2^53, in base 36.
local DIGITS36 = '0123456789abcdefghijklmnopqrstuvwxyz'
local function base36(n)
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(DIGITS36, d + 1, d + 1) .. s
    n = (n - d) / 36
  until n == 0
  return s
end

-- An entry's value as a table (exp: the expiry as stored), or nil for a
-- value this build cannot read.
local function parse_entry(v)
  local hseq, sseq, code, slots, region, room, exp =
    string.match(v, '^(%w+) (%w+) (%l)([%d.]*) (%S+) (%S+) (%w+)$')
  local status = STATUS_OF[code]
  if not status then return nil end
  local e = {hseq = hseq, sseq = sseq, status = status, region = region, room = room,
             expiry = tonumber(exp, 36), exp = exp, cap = 1, free = 1, rep = 1}
  if slots ~= '' then
    local c, f, r = string.match(slots, '^(%d+)%.(%d+)%.(%d+)$')
    if not c then return nil end
    e.cap, e.free, e.rep = tonumber(c), tonumber(f), tonumber(r)
  end
  return e
end

-- Slots: a host has `cap` (its capacity, at least 1), `rep` free as it last
-- reported them (its heartbeats' availableSlots: the host is the authority
-- on its sessions), and `free`: what finds may still take, which is `rep`
-- less the slots clients claimed within the running lease (a heartbeat
-- within the lease never gives those back: the host may not have seen the
-- client yet). A find may take a host while it is idle with a free slot.
local function findable(e) return e.status == STATUS_IDLE and e.free > 0 end

-- The entry of `id` in bucket k, live or not, as a table, or nil when there
-- is none.
local function get_entry(k, id)
  local v = call('HGET', k.e, id)
  if not v then return nil end
  local e = parse_entry(v)
  if not e then error('HGET ' .. k.e .. ': an entry this build cannot read', 0) end
  return e
end

local function live(e) return e and e.expiry > now end

-- Writes entry `e`: with a new expiry (ms, and the same in base 36: a batch
-- encodes its expiry once), or keeping the one it has.
local function put_entry(k, id, e, expiry, expiry36)
  if expiry then e.expiry, e.exp = expiry, expiry36 end
  local slots = ''
  if e.cap ~= 1 or e.free ~= 1 or e.rep ~= 1 then
    slots = string.format('%d.%d.%d', e.cap, e.free, e.rep)
  end
  call('HSET', k.e, id, e.hseq .. ' ' .. e.sseq .. ' ' .. string.sub(e.status, 1, 1) .. slots ..
       ' ' .. e.region .. ' ' .. e.room .. ' ' .. e.exp)
end

-- Removes every trace of `id` from bucket k (its entry `e`, if known).
local function remove_host(k, id, e)
  if e then
    call('ZREM', k.i, idle_member(e.region, id))
    touch(k, e.region)
  end
  call('ZREM', k.c, id) -- its claim, if any
  call('HDEL', k.e, id)
end

-- The end of the lease of `id`'s unconfirmed claim, or nil.
local function lease_of(k, id)
  local l = call('ZSCORE', k.c, id)
  return l and tonumber(l)
end

-- Puts host `id` in region `region`'s part of the find index or takes it
-- out, as `e` now says, given whether it was in before and where: the index
-- first, the entry (written by the caller) last.
local function reindex(k, id, e, was, old_region)
  local now_in = findable(e)
  if now_in and not (was and old_region == e.region) then
    call('ZADD', k.i, 0, idle_member(e.region, id))
    touch(k, e.region)
  end
  if was and not (now_in and old_region == e.region) then
    call('ZREM', k.i, idle_member(old_region, id))
    touch(k, old_region)
  end
end

-- Ends the claims' lease on host `id` (entry `e`, changed in place; the
-- caller reindexes and writes it): the slots they held are free again as
-- far as the host's last report says, and a host the claims made busy is
-- idle again, unless `confirmed` (its own `busy` confirms them: the
-- sessions run).
local function end_lease(k, id, e, confirmed)
  call('ZREM', k.c, id)
  e.free = e.rep
  if not confirmed and e.status == STATUS_BUSY then e.status = STATUS_IDLE end
end

-- Ends host `id`'s lease unconfirmed (sweep.lua; release.lua for a claim
-- whose answer never reached its client) and writes it.
local function unclaim(k, id, e)
  local was = findable(e)
  end_lease(k, id, e, false)
  reindex(k, id, e, was, e.region)
  put_entry(k, id, e)
end

-- Removes up to `max` expired entries of bucket k (and a value no build
-- reads); how many. Reads the whole bucket (a few dozen entries): the sweep
-- calls it, a bucket at a time. Bounded: after a mass expiry an unbounded
-- sweep would hold Redis for as long as it takes; readers skip expired
-- entries anyway, so the backlog can drain a little per call.
local function trim(k, max)
  local all = call('HGETALL', k.e)
  local n = 0
  for j = 1, #all, 2 do
    -- The expiry alone first (most entries are live): a whole parse only
    -- for what goes.
    local exp = string.match(all[j + 1], ' (%w+)$')
    if not exp or (tonumber(exp, 36) or 0) <= now then
      remove_host(k, all[j], parse_entry(all[j + 1]))
      n = n + 1
      if n >= max then break end
    end
  end
  return n
end

-- Ends the leases of bucket k that ran out unconfirmed (their slots free
-- again, a host they made busy idle again), looking at `max` due claims at
-- most: how many hosts got theirs back, and how many were looked at.
local function sweep_claims(k, max)
  local due = call('ZRANGEBYSCORE', k.c, '-inf', now, 'LIMIT', 0, max)
  local n = 0
  for _, id in ipairs(due) do
    local e = get_entry(k, id)
    -- A lease holds a slot (free < cap): a member of a host with every slot
    -- free (left behind, or set by hand) is dropped and frees nothing.
    if live(e) and e.free < e.cap then
      unclaim(k, id, e)
      n = n + 1
    else
      call('ZREM', k.c, id)
    end
  end
  return n, #due
end

-- Appends to `out` the summary changes of the buckets touched: "<a|d>
-- <epoch> <bucket> <region>", for the store to apply with summary.lua. With
-- `all`, every region a bucket has a summary state for is reported, changed
-- or not; `again` (a set of regions) is reported whatever it is, so that a
-- summary that lost a change is told once more (a find that met a bucket
-- with no idle host there). Each bucket on its own: a key of the wrong type
-- in one (its error is left out) does not keep the others' changes back.
local function changes(out, all, again)
  for _, b in pairs(touched) do
    local k = b.k
    pcall(function()
      if all then
        for _, r in ipairs(call('HKEYS', k.m)) do b.regions[r] = true end
      end
      for r in pairs(b.regions) do
        local has = call('ZLEXCOUNT', k.i, idle_lo(r), idle_hi(r)) > 0
        local epoch = tonumber(call('HGET', k.m, r) or '0')
        local listed = epoch % 2 == 1
        if has ~= listed then
          epoch = epoch + 1
          call('HSET', k.m, r, epoch)
          out[#out + 1] = (has and 'a' or 'd') .. ' ' .. epoch .. ' ' .. num_of(k) .. ' ' .. r
        elseif (all or (again and again[r])) and epoch > 0 then
          out[#out + 1] = (has and 'a' or 'd') .. ' ' .. epoch .. ' ' .. num_of(k) .. ' ' .. r
        end
      end
    end)
  end
  return out
end

-- a > b for sequence numbers (base 36, no leading zeros): exact for 64 bits,
-- where Lua's doubles are not (10 digits of base 36 are below 2^53), and
-- whatever Redis's collation locale (no string comparison).
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  if #a <= 10 then return tonumber(a, 36) > tonumber(b, 36) end
  local ha, hb = tonumber(string.sub(a, 1, -11), 36), tonumber(string.sub(b, 1, -11), 36)
  if ha ~= hb then return ha > hb end
  return tonumber(string.sub(a, -10), 36) > tonumber(string.sub(b, -10), 36)
end
