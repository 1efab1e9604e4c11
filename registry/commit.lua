-- commit.lua: store a planned assignment if the epoch it was planned from is
-- still current. Groups no longer in :groups are dropped. An assignment equal
-- to the stored one (same digest) only records prev/pmver: no epoch bump, no
-- event. Otherwise :assign and :revoked are replaced, the epoch is incremented
-- and an "assignment" event is logged and published.
--
-- KEYS[1] :state   HASH epoch, prev, pmver, adigest
-- KEYS[2] :assign  HASH node ID -> comma-joined sorted groups ("" = standby)
-- KEYS[3] :revoked HASH node ID -> comma-joined revoked entries "group@epoch" (opaque)
-- KEYS[4] :groups  SET group names
-- KEYS[5] :log     STREAM events
-- ARGV[1] epoch the plan was computed from
-- ARGV[2] rev the plan was computed from (stored as prev)
-- ARGV[3] mver the plan was computed from (stored as pmver)
-- ARGV[4] by
-- ARGV[5] events channel
-- ARGV[6] log MAXLEN
-- ARGV[7] number N of assignment pairs
-- ARGV[8 .. 7+2N]  node ID, groups (sorted by node ID)
-- ARGV[8+2N ..]    node ID, revoked groups (sorted by node ID)
--
-- Reply: {"stale", current epoch} | {"same", epoch} | {"ok", new epoch}
local st = redis.call('HMGET', KEYS[1], 'epoch', 'adigest')
local epoch = tonumber(st[1] or '0') or 0
if epoch ~= tonumber(ARGV[1]) then
  return {'stale', num(epoch)}
end

local known = {}
for _, g in ipairs(redis.call('SMEMBERS', KEYS[4])) do known[g] = true end
local function filter(v)
  if v == '' then return v end
  if not string.find(v, ',', 1, true) then
    if known[v] then return v end
    return ''
  end
  local out = {}
  for g in string.gmatch(v, '[^,]+') do
    if known[g] then out[#out + 1] = g end
  end
  return table.concat(out, ',')
end

local n = tonumber(ARGV[7])
local assign, revoked = {}, {}
local i = 8
for _ = 1, n do
  assign[#assign + 1] = ARGV[i]
  assign[#assign + 1] = filter(ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  -- Revoked entries ("group@epoch") belong to the rebalancer: stored as given.
  local v = ARGV[i + 1]
  if v ~= '' then
    revoked[#revoked + 1] = ARGV[i]
    revoked[#revoked + 1] = v
  end
  i = i + 2
end

local digest = redis.sha1hex(table.concat(assign, '\n') .. '\n\0\n' .. table.concat(revoked, '\n'))
if digest == st[2] and redis.call('HLEN', KEYS[2]) * 2 == #assign
    and redis.call('HLEN', KEYS[3]) * 2 == #revoked then
  redis.call('HSET', KEYS[1], 'prev', ARGV[2], 'pmver', ARGV[3])
  return {'same', num(epoch)}
end

local function hset_all(key, flat)
  redis.call('DEL', key)
  local chunk = 2000
  for s = 1, #flat, chunk do
    local e = math.min(s + chunk - 1, #flat)
    redis.call('HSET', key, unpack(flat, s, e))
  end
end
hset_all(KEYS[2], assign)
hset_all(KEYS[3], revoked)
epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'prev', ARGV[2], 'pmver', ARGV[3], 'adigest', digest)
emit(KEYS[5], ARGV[5], ARGV[6], 'assignment', '', '', ARGV[4], epoch, 0, now_ms())
return {'ok', num(epoch)}
