-- commit.lua: store a planned assignment if the epoch it was planned from is
-- still current. Groups no longer in :groups are dropped from the node lists.
-- When the result equals the stored assignment (same digest: sha1 of the node
-- pairs joined by NUL, then \1, then the revoked pairs joined by NUL) only
-- prev/pmver are recorded: no epoch bump, no event. Otherwise :assign and
-- :revoked are replaced, the epoch is incremented and an "assignment" event is
-- logged and published.
--
-- Probe mode (only ARGV[1..7] sent): answers "same" or "stale" in O(1), else
-- "send" and the caller sends the whole plan; so an unchanged plan of 10k
-- nodes never crosses the wire.
--
-- KEYS[1] :state   HASH epoch, prev, pmver, gdel (deleted groups counter),
--                  adigest / agdel (digest and gdel of the stored assignment)
-- KEYS[2] :assign  HASH node ID -> comma-joined sorted groups ("" = standby)
-- KEYS[3] :revoked HASH node ID -> comma-joined revoked entries "group@epoch"
--                  (the rebalancer's, stored as given, never filtered)
-- KEYS[4] :groups  SET group names
-- KEYS[5] :log     STREAM events
-- KEYS[6] :holders HASH group -> number of nodes assigned it
-- ARGV[1] epoch the plan was computed from
-- ARGV[2] rev the plan was computed from (stored as prev)
-- ARGV[3] mver the plan was computed from (stored as pmver)
-- ARGV[4] by
-- ARGV[5] events channel
-- ARGV[6] log MAXLEN
-- ARGV[7] digest of the plan as sent (before dropping deleted groups)
-- ARGV[8] number G of distinct groups named in the node lists
-- ARGV[9] number N of node pairs
-- ARGV[10 .. 9+G]              the G group names
-- ARGV[10+G .. 9+G+2N]         node ID, groups (sorted by node ID)
-- ARGV[10+G+2N ..]             node ID, revoked entries (sorted by node ID)
--
-- Reply: {"stale", current epoch} | {"same", epoch} | {"ok", new epoch}
--        | {"send"} (probe mode only)
local st = redis.call('HMGET', KEYS[1], 'epoch', 'adigest', 'gdel', 'agdel')
local epoch = tonumber(st[1] or '0') or 0
if epoch ~= tonumber(ARGV[1]) then
  return {'stale', num(epoch)}
end
local gdel = st[3] or '0'
local function same()
  redis.call('HSET', KEYS[1], 'prev', ARGV[2], 'pmver', ARGV[3], 'agdel', gdel)
  return {'same', num(epoch)}
end
if st[2] == ARGV[7] and (st[4] or '0') == gdel then
  return same()
end
if #ARGV == 7 then
  return {'send'}
end

local ng, nn = tonumber(ARGV[8]), tonumber(ARGV[9])
local first = 10 + ng                 -- first node pair
local firstRevoked = first + 2 * nn   -- first revoked pair
local chunk = 2000

-- Which named groups are gone? Usually none: then the lists are stored as sent.
local missing = nil
for s = 10, 9 + ng, chunk do
  local e = math.min(s + chunk - 1, 9 + ng)
  local present = redis.call('SMISMEMBER', KEYS[4], unpack(ARGV, s, e))
  for j = 1, #present do
    if present[j] == 0 then
      missing = missing or {}
      missing[ARGV[s + j - 1]] = true
    end
  end
end

local digest = ARGV[7]
local assign = nil -- filtered node pairs when some group is gone
if missing then
  assign = {}
  for i = first, firstRevoked - 1, 2 do
    local v = ARGV[i + 1]
    if v ~= '' then
      local out = {}
      for g in string.gmatch(v, '[^,]+') do
        if not missing[g] then out[#out + 1] = g end
      end
      v = table.concat(out, ',')
    end
    assign[#assign + 1] = ARGV[i]
    assign[#assign + 1] = v
  end
  local revoked = {}
  for i = firstRevoked, #ARGV do revoked[#revoked + 1] = ARGV[i] end
  digest = redis.sha1hex(table.concat(assign, '\0') .. '\1' .. table.concat(revoked, '\0'))
end
if st[2] == digest then
  return same()
end

local function hset_range(key, list, from, to)
  redis.call('DEL', key)
  for s = from, to, chunk do
    redis.call('HSET', key, unpack(list, s, math.min(s + chunk - 1, to)))
  end
end
if assign then
  hset_range(KEYS[2], assign, 1, #assign)
else
  hset_range(KEYS[2], ARGV, first, firstRevoked - 1)
end
hset_range(KEYS[3], ARGV, firstRevoked, #ARGV)

-- Holder counts, so a node's share of a group needs no read of the pool.
local list, from, to = ARGV, first, firstRevoked - 1
if assign then list, from, to = assign, 1, #assign end
local counts = {}
for i = from + 1, to, 2 do
  for g in string.gmatch(list[i], '[^,]+') do counts[g] = (counts[g] or 0) + 1 end
end
local flat = {}
for g, c in pairs(counts) do
  flat[#flat + 1] = g
  flat[#flat + 1] = c
end
hset_range(KEYS[6], flat, 1, #flat)
epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'prev', ARGV[2], 'pmver', ARGV[3], 'adigest', digest, 'agdel', gdel)
emit(KEYS[5], ARGV[5], ARGV[6], 'assignment', '', '', ARGV[4], epoch, 0, now_ms())
return {'ok', num(epoch)}
