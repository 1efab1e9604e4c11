-- health.lua: one change of a group's key health, atomically with the
-- unhealthy index, the rev counter, the probe schedule and the events. One
-- script per report, so a report is one round trip and a storm of reports
-- from many nodes suspends a group exactly once.
--
-- KEYS[1]  :group:<name>    STRING group JSON (read only)
-- KEYS[2]  :health:<name>   HASH the group's health (see below)
-- KEYS[3]  :unhealthy       HASH group -> "state\tcreated" (suspended|probing)
-- KEYS[4]  :state           HASH (rev)
-- KEYS[5]  :log             STREAM events
-- KEYS[6]  :schedule        ZSET schedule ID -> due ms
-- KEYS[7]  :schedule:items  HASH schedule ID -> JSON
-- KEYS[8]  :nodes           ZSET live node -> last beat ms
-- KEYS[9]  :assign          HASH node -> comma-joined groups
-- KEYS[10] :revoked         HASH node -> comma-joined group@epoch
-- KEYS[11] :usage:<name>:   prefix of the per-minute usage HASHes (the
--          limiter's; throttled and failure reports are counted there too)
-- ARGV[1]  op: throttled | failure | success | suspend | resume | probe
-- ARGV[2]  reporting node ID ("" = an operator or the coordinator: no lease
--          or holder check)
-- ARGV[3]  the node's TTL in ms (a node whose last beat is older is lapsed)
-- ARGV[4]  throttled: Retry-After in ms, capped by the caller; "-1" = none
--          given (1 s, doubling on repeats up to 60 s)
-- ARGV[5]  reason (failure, suspend), at most 200 bytes, never a secret
-- ARGV[6]  probe_after base in ms (first wait before a probe)
-- ARGV[7]  longest probe wait in ms
-- ARGV[8]  by (recorded in events)
-- ARGV[9]  events channel
-- ARGV[10] log MAXLEN
-- ARGV[11] probe schedule item ID ("probe-<name>")
-- ARGV[12] probe item JSON without created/at
-- ARGV[13] usage TTL in seconds
--
-- Health fields: state (active|suspended|probing; absent = active),
-- cooling_until, wait (last default throttle wait), throttle_event (ms of
-- the last group.throttled event), fails (comma-joined ms of the failures in
-- the window), reason, since, next_probe, probe_wait, successes, created
-- (of the group document these fields belong to), throttles_total,
-- failures_total, suspensions_total.
--
-- Reply: {status, state, cooling_until, failures, transition}
--   status: ok | missing | retired | lapsed | notheld | ignored | claimed
--   transition: "" | suspended | probing | recovered | resumed
local op, node, name = ARGV[1], ARGV[2], ''
local channel, maxlen = ARGV[9], ARGV[10]
local probeID = ARGV[11]
local now = now_ms()

local raw = redis.call('GET', KEYS[1])
if not raw then
  if op == 'probe' then
    redis.call('ZREM', KEYS[6], probeID)
    redis.call('HDEL', KEYS[7], probeID)
  end
  return {'missing', '', '0', '0', ''}
end
local doc = cjson.decode(raw)
name = doc.name
local created = type(doc.created) == 'string' and doc.created or ''

-- Health left by a deleted group of the same name never applies.
if redis.call('HGET', KEYS[2], 'created') ~= created then
  redis.call('DEL', KEYS[2])
  redis.call('HDEL', KEYS[3], name)
  redis.call('HSET', KEYS[2], 'created', created)
end

local function field(f)
  return redis.call('HGET', KEYS[2], f) or ''
end
local function numfield(f)
  return tonumber(redis.call('HGET', KEYS[2], f) or '0') or 0
end

local state = field('state')
if state == '' then state = 'active' end

-- The eject window: eject_after "N/<n><unit>"; "0" = never suspend (the
-- failures of the last minute are still counted for display).
local spec = doc.eject_after
if type(spec) ~= 'string' or spec == '' then spec = '3/1m' end
local limit, span, unit = string.match(spec, '^(%d+)/(%d+)(%a+)$')
limit = tonumber(limit) or 0
local window = (tonumber(span) or 0) * (({ms = 1, s = 1000, m = 60000, h = 3600000})[unit or 's'] or 1000)
if limit == 0 then window = 60000 end

-- fails returns the failure times still inside the window.
local function fails()
  local out = {}
  for ts in string.gmatch(field('fails'), '[^,]+') do
    local t = tonumber(ts)
    if t and t > now - window then out[#out + 1] = t end
  end
  return out
end

local function reply(status, transition)
  local st = field('state')
  if st == '' then st = 'active' end
  return {status, st, num(numfield('cooling_until')), tostring(#fails()), transition or ''}
end

if doc.state == 'retired' then
  return reply('retired')
end

-- A report counts only from a node that is live (its lease has not lapsed)
-- and holds the group (granted, or revoked but not yet released).
if node ~= '' then
  local beat = redis.call('ZSCORE', KEYS[8], node)
  if not beat or tonumber(beat) + tonumber(ARGV[3]) < now then
    return reply('lapsed')
  end
  local holds = false
  for g in string.gmatch(redis.call('HGET', KEYS[9], node) or '', '[^,]+') do
    if g == name then holds = true end
  end
  for e in string.gmatch(redis.call('HGET', KEYS[10], node) or '', '[^,]+') do
    if string.match(e, '^(.*)@') == name or e == name then holds = true end
  end
  if not holds then
    return reply('notheld')
  end
end

-- emit_reason is emit (common.lua) plus the reason field.
local function emit_reason(typ, reason)
  local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*',
    'type', typ, 'group', name, 'node', node, 'epoch', '0',
    'version', num(tonumber(doc.version) or 0), 'by', ARGV[8], 'at', num(now),
    'reason', reason)
  publish(channel, typ, name, cjson.encode({
    id = id, type = typ, group = name, node = node, epoch = 0,
    version = tonumber(doc.version) or 0, by = ARGV[8], at = now, reason = reason}))
end

local function unschedule_probe()
  redis.call('ZREM', KEYS[6], probeID)
  redis.call('HDEL', KEYS[7], probeID)
end

-- suspend turns the group suspended; wait > 0 schedules a probe after it.
local function suspend(reason, wait)
  redis.call('HSET', KEYS[2], 'state', 'suspended', 'reason', reason, 'since', num(now),
    'successes', '0', 'probe_wait', num(wait))
  redis.call('HINCRBY', KEYS[2], 'suspensions_total', 1)
  unschedule_probe()
  if wait > 0 then
    local due = now + wait
    redis.call('HSET', KEYS[2], 'next_probe', num(due))
    redis.call('ZADD', KEYS[6], num(due), probeID)
    redis.call('HSET', KEYS[7], probeID, stamp(ARGV[12], {'created', iso(now), 'at', iso(due)}))
  else
    redis.call('HDEL', KEYS[2], 'next_probe')
  end
  redis.call('HSET', KEYS[3], name, 'suspended\t' .. created)
  group_rev(KEYS[4], name, redis.call('HINCRBY', KEYS[4], 'rev', 1))
  emit_reason('group.suspended', reason)
  return reply('ok', 'suspended')
end

local function activate(typ)
  redis.call('HDEL', KEYS[2], 'state', 'fails', 'reason', 'since', 'next_probe', 'probe_wait', 'successes')
  unschedule_probe()
  redis.call('HDEL', KEYS[3], name)
  group_rev(KEYS[4], name, redis.call('HINCRBY', KEYS[4], 'rev', 1))
  emit_reason(typ, '')
end

local base, longest = tonumber(ARGV[6]), tonumber(ARGV[7])

-- count adds one to field of the current minute's usage (server time), the
-- HASH the limiter counts requests in, so `group usage` shows both.
local function count(field)
  local usage = KEYS[11] .. string.format('%.0f', math.floor(now / 60000))
  if redis.call('HINCRBY', usage, field, 1) == 1 then
    redis.call('EXPIRE', usage, ARGV[13])
  end
end

if op == 'throttled' then
  redis.call('HINCRBY', KEYS[2], 'throttles_total', 1)
  count('throttled')
  local untilMs = numfield('cooling_until')
  local ra = tonumber(ARGV[4])
  local wait
  if ra >= 0 then
    wait = ra
  elseif now < untilMs then
    -- Calls of the same burst arriving late: the cooldown already covers them.
    wait = 0
  else
    local last = numfield('wait')
    if last > 0 and now < untilMs + 60000 then
      wait = math.min(last * 2, 60000)
    else
      wait = 1000
    end
    redis.call('HSET', KEYS[2], 'wait', num(wait))
  end
  if now + wait > untilMs then
    redis.call('HSET', KEYS[2], 'cooling_until', num(now + wait))
  end
  if now - numfield('throttle_event') >= 1000 then
    redis.call('HSET', KEYS[2], 'throttle_event', num(now))
    emit_reason('group.throttled', 'retry after ' .. num(math.max(numfield('cooling_until') - now, 0)) .. 'ms')
  end
  return reply('ok')
end

if op == 'failure' then
  if doc.state ~= 'active' then return reply('ignored') end
  redis.call('HINCRBY', KEYS[2], 'failures_total', 1)
  count('failures')
  local reason = ARGV[5]
  if state == 'probing' then
    return suspend(reason, math.min(math.max(numfield('probe_wait'), base) * 2, longest))
  end
  local kept = {}
  for _, ts in ipairs(fails()) do
    kept[#kept + 1] = num(ts)
  end
  kept[#kept + 1] = num(now)
  -- Only the newest `limit` failures can matter (eject_after 0: keep up to
  -- 100 of the last minute, for display).
  local cap = limit > 0 and limit or 100
  while #kept > cap do table.remove(kept, 1) end
  redis.call('HSET', KEYS[2], 'fails', table.concat(kept, ','))
  if state == 'active' and limit > 0 and #kept >= limit then
    return suspend(reason, base)
  end
  return reply('ok')
end

if op == 'success' then
  if doc.state ~= 'active' then return reply('ignored') end
  if state ~= 'probing' then return reply('ok') end
  if redis.call('HINCRBY', KEYS[2], 'successes', 1) >= 3 then
    activate('group.recovered')
    return reply('ok', 'recovered')
  end
  return reply('ok')
end

if op == 'suspend' then
  if doc.state ~= 'active' or state == 'suspended' then return reply('ignored') end
  -- An operator's suspension lasts until resume: no probe.
  return suspend(ARGV[5], 0)
end

if op == 'resume' then
  activate('group.resumed')
  return reply('ok', 'resumed')
end

if op == 'probe' then
  if redis.call('HEXISTS', KEYS[7], probeID) == 0 then
    return reply('claimed')
  end
  unschedule_probe()
  if state ~= 'suspended' or doc.state ~= 'active' then
    return reply('ignored')
  end
  redis.call('HSET', KEYS[2], 'state', 'probing', 'successes', '0')
  redis.call('HDEL', KEYS[2], 'next_probe')
  redis.call('HSET', KEYS[3], name, 'probing\t' .. created)
  group_rev(KEYS[4], name, redis.call('HINCRBY', KEYS[4], 'rev', 1))
  emit_reason('group.probing', field('reason'))
  return reply('ok', 'probing')
end

return redis.error_reply('health.lua: unknown op ' .. op)
