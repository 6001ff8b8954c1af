-- hostreg summary: which buckets of a region may hold idle hosts, so that a
-- find picks one at random in O(1) whatever the number of buckets and hosts
-- (docs/design/layout-v2.md). The bucket scripts report changes with an
-- epoch that only grows, per bucket and region (entry.lua: changes()); a
-- change older than the last one applied changes nothing, so changes that
-- arrive late or out of order never undo newer ones.
-- KEYS: the region's set of bucket numbers, then its epochs (bucket ->
-- epoch). ARGV: SUM_STRIDE per change (HR_SCRIPT_SUMMARY_FIELDS): op ('a':
-- may hold idle hosts, 'd': holds none), epoch, bucket.
-- Returns the number of changes applied.
local moving = slot_moving()
if moving then return moving end
local n = 0
for i = 1, #ARGV - SUM_STRIDE + 1, SUM_STRIDE do
  local op, epoch, b = ARGV[i + SUM_OP], tonumber(ARGV[i + SUM_EPOCH]), ARGV[i + SUM_BUCKET]
  local cur = tonumber(call('HGET', KEYS[2], b) or '0')
  if epoch > cur then
    call('HSET', KEYS[2], b, epoch)
    if op == 'a' then call('SADD', KEYS[1], b) else call('SREM', KEYS[1], b) end
    n = n + 1
  elseif epoch == cur then -- a state repeated (sweep.lua): heals a change lost on the way
    if op == 'a' then call('SADD', KEYS[1], b) else call('SREM', KEYS[1], b) end
  end
end
return n
