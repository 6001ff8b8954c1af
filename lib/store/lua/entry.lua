-- hostreg entries: what every script below shares (lib/store/script_gen.c puts
-- this in front of each of them, after the constants of lib/store/script.h:
-- STATUS_*, KEY_*, OP_*, RES_*, the ARGV positions and reply layouts).
--
-- A host's entry is one string with the entry's TTL:
--   "<hseq> <sseq> <status> <region> <room>[ <lease>[ <claim>]]"
-- hseq and sseq: the sequence numbers of the last heartbeat and the last
-- status update applied, decimal without leading zeros ('0': none, HTTP);
-- status one of STATUSES; lease: when a client's claim ends unconfirmed, in
-- ms (claim.lua); claim: that claim's id, when the client gave one. Ids, rooms and regions never hold a space. One string costs
-- less memory than a hash of the same fields (no field names, one
-- allocation), and a refresh is one SET.
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

-- Key names (lib/store/script.h, HR_SCRIPT_KEYS), after the key prefix.
local pfx = ARGV[PREFIX]
local function host_key(id) return pfx .. KEY_HOST .. id end
local function tomb_key(id) return pfx .. KEY_TOMB .. id end
local function index_key(region, status) return pfx .. KEY_INDEX .. region .. ':' .. status end
local claims_key = pfx .. KEY_CLAIMS

-- Removes up to 64 expired members of an index. Bounded: after a mass expiry
-- (a region's hosts all gone at once) an unbounded ZREMRANGEBYSCORE would hold
-- Redis for as long as it takes to drop them all; readers skip expired members
-- by score anyway, so the backlog can drain a little per call.
local function trim(idx)
  local old = call('ZRANGEBYSCORE', idx, '-inf', '(' .. now, 'LIMIT', 0, 64)
  if #old > 0 then call('ZREM', idx, unpack(old)) end
end

-- The entry at `key` as a table, or nil when there is none. A key of
-- another type (an entry of the hash layout of older builds) reads as none,
-- and the next write replaces it. Any other error is an error, never "none"
-- (on a Redis Cluster node that does not hold the key, say): a reader that
-- took it for an absent host would drop it from the answer, or worse.
local function get_entry(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err and not string.find(v.err, '^WRONGTYPE') then
    error('GET ' .. key .. ': ' .. v.err, 0)
  end
  if type(v) ~= 'string' then return nil end
  local hseq, sseq, status, region, room, lease, claim =
    string.match(v, '^(%d+) (%d+) (%a+) (%S+) (%S+) ?(%d*) ?(%x*)$')
  if not hseq then return nil end
  return {hseq = hseq, sseq = sseq, status = status, region = region, room = room,
          lease = lease ~= '' and lease or nil, claim = claim ~= '' and claim or nil}
end

-- Writes entry `e` at `key`: with a TTL of `px` ms, or keeping its TTL.
local function put_entry(key, e, px)
  local v = e.hseq .. ' ' .. e.sseq .. ' ' .. e.status .. ' ' .. e.region .. ' ' .. e.room
  if e.lease then
    v = v .. ' ' .. e.lease
    if e.claim then v = v .. ' ' .. e.claim end
  end
  if px then
    call('SET', key, v, 'PX', px)
  else
    call('SET', key, v, 'KEEPTTL')
  end
end

-- Returns the claimed host of entry `e` (at `h`, hostId `id`) to idle: its
-- lease ended unconfirmed (sweep.lua) or its claim was released
-- (release.lua). Into the idle index with its entry's expiry, out of the busy
-- one and the claims set; the entry last, keeping its TTL.
local function unclaim(h, id, e)
  local expiry = now + call('PTTL', h)
  call('ZADD', index_key(e.region, STATUS_IDLE), expiry, id)
  call('ZREM', index_key(e.region, STATUS_BUSY), id)
  call('ZREM', claims_key, id)
  e.status, e.lease, e.claim = STATUS_IDLE, nil, nil
  put_entry(h, e)
end

-- a > b for sequence numbers (decimal, no leading zeros): exact for 64 bits,
-- where Lua's doubles are not.
local function newer(a, b)
  return #a > #b or (#a == #b and a > b)
end

-- A stored tombstone's seq without leading zeros (older builds padded it).
local function tomb_seq(v)
  return v and (string.match(v, '^0*(%d+)$') or '0')
end

