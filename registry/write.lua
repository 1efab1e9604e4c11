-- write.lua: create, replace or delete one group document, atomically with
-- its history, the group set, the rev counter, the schedule and the events.
-- Optionally claims a scheduled item (ApplyDue): the write happens only if the
-- item is still pending, and removes it, so an item is applied exactly once.
--
-- KEYS[1] :group:<name>   STRING group JSON
-- KEYS[2] :history:<name> LIST past versions, newest first
-- KEYS[3] :groups         SET group names
-- KEYS[4] :state          HASH (rev)
-- KEYS[5] :log            STREAM events
-- KEYS[6] :schedule       ZSET schedule ID -> due ms
-- KEYS[7] :schedule:items HASH schedule ID -> JSON
-- KEYS[8] :health:<name>  HASH key health (delete drops it)
-- KEYS[9] :unhealthy      HASH group -> suspended|probing (delete drops the entry)
-- KEYS[10] :quota:<name>  HASH the limiter's state (delete drops it)
-- KEYS[11] :usage:<name>: prefix of the per-minute usage HASHes (delete drops
--          every minute still kept)
-- KEYS[12] :borrowers:<name> ZSET the nodes that borrowed the group (delete
--          drops it)
-- ARGV[1]  mode: "put" | "delete" | "drop" (drop: only claim ARGV[10], log schedule.dropped)
-- ARGV[2]  expected current version: "0" = the group must not exist
-- ARGV[3]  group name
-- ARGV[4]  put: document JSON without created/updated (and without drain_by when ARGV[11] is set)
-- ARGV[5]  history limit
-- ARGV[6]  event type
-- ARGV[7]  by
-- ARGV[8]  version of the event (the new version; the deleted one for delete)
-- ARGV[9]  events channel
-- ARGV[10] schedule ID to claim ("" = none)
-- ARGV[11] drain timeout ms ("" = none): stamp drain_by = now + ms and
--          schedule item ARGV[12] (JSON ARGV[13] without created/at) at drain_by
-- ARGV[12] drain item ID
-- ARGV[13] drain item JSON without created/at
-- ARGV[14] schedule ID to remove without applying ("" = none)
-- ARGV[15] log MAXLEN
-- ARGV[16] by of the claimed item (for schedule.applied / schedule.dropped)
-- ARGV[17] delete: the probe schedule item ID of the group
-- ARGV[18] delete: how many minutes of usage are kept (the usage TTL)
--
-- Reply: {"ok", stored JSON} | {"exists"} | {"missing"} | {"version", current}
--        | {"claimed"} (the item was applied, dropped or cancelled by someone else)
local mode, name = ARGV[1], ARGV[3]
local channel, maxlen = ARGV[9], ARGV[15]
local claim = ARGV[10]
local now = now_ms()

if claim ~= '' and redis.call('HEXISTS', KEYS[7], claim) == 0 then
  return {'claimed'}
end

local function unschedule(id)
  if id ~= '' then
    redis.call('ZREM', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
  end
end

if mode == 'drop' then
  unschedule(claim)
  emit(KEYS[5], channel, maxlen, 'schedule.dropped', name, '', ARGV[16], 0, 0, now)
  return {'ok', ''}
end

local created = iso(now)
local cur = redis.call('GET', KEYS[1])
local expected = tonumber(ARGV[2])
if not cur then
  if expected ~= 0 then return {'missing'} end
else
  if expected == 0 then return {'exists'} end
  local doc = cjson.decode(cur)
  if tonumber(doc.version) ~= expected then
    return {'version', num(tonumber(doc.version) or 0)}
  end
  if type(doc.created) == 'string' then created = doc.created end
end

unschedule(claim)
unschedule(ARGV[14])
local rev = redis.call('HINCRBY', KEYS[4], 'rev', 1)

-- drop_limits removes everything the limiter and key health keep of the
-- group, so a group created later under the same name starts clean: no
-- debt, no cooldown, no usage, no suspension or probe.
local function drop_limits()
  redis.call('DEL', KEYS[8], KEYS[10], KEYS[12])
  redis.call('HDEL', KEYS[9], name)
  unschedule(ARGV[17])
  -- Usage minutes are named by server minute and expire after ARGV[18]
  -- minutes; a minute either side covers a write racing this one.
  local nowMin = math.floor(now / 60000)
  local batch = {}
  for m = nowMin - tonumber(ARGV[18]) - 1, nowMin + 1 do
    batch[#batch + 1] = KEYS[11] .. string.format('%.0f', m)
    if #batch == 256 then
      redis.call('DEL', unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('DEL', unpack(batch)) end
end

if mode == 'delete' then
  group_rev(KEYS[4], name, nil)
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[3], name)
  drop_limits()
  emit(KEYS[5], channel, maxlen, ARGV[6], name, '', ARGV[7], 0, tonumber(ARGV[8]), now, rev)
  if claim ~= '' then
    emit(KEYS[5], channel, maxlen, 'schedule.applied', name, '', ARGV[16], 0, tonumber(ARGV[8]), now)
  end
  return {'ok', ''}
end

local fields = {'created', created, 'updated', iso(now)}
if ARGV[11] ~= '' then
  local due = now + tonumber(ARGV[11])
  local drainBy = iso(due)
  fields[#fields + 1] = 'drain_by'
  fields[#fields + 1] = drainBy
  redis.call('ZADD', KEYS[6], num(due), ARGV[12])
  redis.call('HSET', KEYS[7], ARGV[12], stamp(ARGV[13], {'created', iso(now), 'at', drainBy}))
end
local doc = stamp(ARGV[4], fields)
redis.call('SET', KEYS[1], doc)
group_rev(KEYS[4], name, rev)
redis.call('LPUSH', KEYS[2], doc)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('SADD', KEYS[3], name)
emit(KEYS[5], channel, maxlen, ARGV[6], name, '', ARGV[7], 0, tonumber(ARGV[8]), now, rev, doc)
if claim ~= '' then
  emit(KEYS[5], channel, maxlen, 'schedule.applied', name, '', ARGV[16], 0, tonumber(ARGV[8]), now)
end
return {'ok', doc}
