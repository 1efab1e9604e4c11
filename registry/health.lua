-- health.lua: one change of a group's key health, atomically with the
-- unhealthy index, the rev counter, the probe schedule and the events. One
-- script per report, so a report is one round trip and a storm of reports
-- from many nodes suspends a group exactly once. The script hard-codes no
-- policy: every number it decides with comes in ARGV from one Go definition
-- (registry/health.go, healthTunables) or from the namespace's settings.
--
-- Reports come from the least trusted processes: a report is bounded before
-- its first write (live holder, per-node rate), one node alone never
-- suspends a group that others hold too, suspends at most one group per
-- probe wait, never cools a group longer than max_cooldown, and reports
-- suspend at most max_suspended of the pool's groups (see docs/design.md,
-- "Key health").
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
-- KEYS[12] :settings        HASH namespace settings (read only):
--          max_suspended (percent), max_cooldown_ms, ttl_ms
-- KEYS[13] :holders         HASH group -> holder count (read only)
-- KEYS[14] :groups          SET group names (read only: the pool's size)
-- KEYS[15] :ejectors        HASH node -> ms of the last suspension its
--          report caused (expires after the probe wait)
-- KEYS[16] :reporters       HASH node -> report rate TAT ms (GCRA)
-- KEYS[17] :borrowers:<name> ZSET node -> ms until which its borrow of the
--          group (written by the acquire script) proves it used the key
-- KEYS[18] :members         HASH node -> record (session = 6th tab field;
--          read only when ARGV[26] is set)
-- ARGV[1]  op: throttled | failure | success | suspend | resume | cool_clear
--          | probe
-- ARGV[2]  reporting node ID ("" = an operator or the coordinator: no lease,
--          holder, rate or corroboration check)
-- ARGV[3]  the node's TTL in ms when the namespace stores none (:settings
--          ttl_ms wins; a node whose last beat is older is lapsed)
-- ARGV[4]  throttled: Retry-After in ms, capped by the caller; "-1" = none
--          given (ARGV[18], doubling on repeats up to ARGV[19])
-- ARGV[5]  reason (failure, suspend), at most 200 bytes, never a secret
-- ARGV[6]  probe_after base in ms (first wait before a probe; also how long
--          a node that suspended a group cannot suspend another)
-- ARGV[7]  longest probe wait in ms
-- ARGV[8]  by (recorded in events)
-- ARGV[9]  events channel
-- ARGV[10] log MAXLEN
-- ARGV[11] probe schedule item ID ("probe-<name>")
-- ARGV[12] probe item JSON without created/at
-- ARGV[13] usage TTL in seconds
-- ARGV[14] eject_after of a group that sets none ("3/1m")
-- ARGV[15] failure window in ms when eject_after is "0" (display only)
-- ARGV[16] most failures kept when eject_after is "0"
-- ARGV[17] successes in a row that bring a probing group back
-- ARGV[18] first default throttle wait in ms (no Retry-After given)
-- ARGV[19] longest default throttle wait in ms
-- ARGV[20] ms after a cooldown within which a new throttle doubles the wait
-- ARGV[21] least ms between two group.throttled events of a group
-- ARGV[22] max_suspended default in percent (no setting stored)
-- ARGV[23] max_cooldown default in ms (no setting stored)
-- ARGV[24] report rate: ms per report and node
-- ARGV[25] report burst per node
-- ARGV[26] session the report must come from ("" = not checked: a Go node,
--          whose session its beats keep); an HTTP lease's session
-- ARGV[27] lease expiry in ms ("0" = none): a report made on a lease is
--          refused once it has expired
--
-- Health fields: state (active|suspended|probing; absent = active),
-- cooling_until, wait (last default throttle wait), throttle_event (ms of
-- the last group.throttled event), long_node / long_at (the node that last
-- asked for a cooldown longer than max_cooldown, and when), fails
-- (comma-joined "ms:node" of the failures in the window, as of the last
-- report), reason, since, next_probe, probe_wait, successes, probe_nodes
-- (comma-joined nodes whose successes count), created (of the group
-- document these fields belong to), throttles_total, failures_total,
-- suspensions_total, limited_total (reports refused by the rate).
--
-- Reply: {status, state, cooling_until, failures, transition, note}
--   status: ok | missing | retired | lapsed | notheld | ignored | claimed |
--           limited | session (ARGV[26] is not the node's session) |
--           expired (ARGV[27] has passed)
--   transition: "" | suspended | probing | recovered | resumed | cleared
--   note: why a report that reached a threshold did not act: "" |
--         uncorroborated | ejector | capped (cooled instead) | cooldown
--         (a Retry-After cut to max_cooldown)
local op, node, name = ARGV[1], ARGV[2], ''
local channel, maxlen = ARGV[9], ARGV[10]
local probeID = ARGV[11]
local now = now_ms()
local note = ''

local raw = redis.call('GET', KEYS[1])
if not raw then
  if op == 'probe' then
    redis.call('ZREM', KEYS[6], probeID)
    redis.call('HDEL', KEYS[7], probeID)
  end
  return {'missing', '', '0', '0', '', ''}
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

-- Namespace settings, read live so `allot namespace set` acts at once.
local settings = redis.call('HMGET', KEYS[12], 'max_suspended', 'max_cooldown_ms')
local maxSuspended = tonumber(settings[1] or '') or tonumber(ARGV[22])
local maxCooldown = tonumber(settings[2] or '') or tonumber(ARGV[23])

-- Step: the eject window. eject_after "N/<n><unit>"; "0" = never suspend
-- (the failures of the display window are still counted).
local spec = doc.eject_after
if type(spec) ~= 'string' or spec == '' then spec = ARGV[14] end
local limit, span, unit = string.match(spec, '^(%d+)/(%d+)(%a+)$')
limit = tonumber(limit) or 0
local window = (tonumber(span) or 0) * (({ms = 1, s = 1000, m = 60000, h = 3600000})[unit or 's'] or 1000)
if limit == 0 then window = tonumber(ARGV[15]) end

-- Step: the failure window. window_fails returns the failures still inside
-- the window, oldest first, as {t, node}; prune_fails stores them, so the
-- count the reply and the group JSON show is the one stored (one clock:
-- the server's).
local function window_fails()
  local out = {}
  for e in string.gmatch(field('fails'), '[^,]+') do
    local ts, who = string.match(e, '^(%d+):(.*)$')
    local t = tonumber(ts)
    if t and t > now - window then out[#out + 1] = {t, who} end
  end
  return out
end

local function store_fails(list)
  if #list == 0 then
    redis.call('HDEL', KEYS[2], 'fails')
    return
  end
  local parts = {}
  for i, f in ipairs(list) do parts[i] = num(f[1]) .. ':' .. f[2] end
  redis.call('HSET', KEYS[2], 'fails', table.concat(parts, ','))
end

local function prune_fails()
  local list = window_fails()
  if field('fails') ~= '' then store_fails(list) end
  return list
end

-- distinct_nodes returns the sorted distinct reporters of list.
local function distinct_nodes(list)
  local seen, out = {}, {}
  for _, f in ipairs(list) do
    if not seen[f[2]] then
      seen[f[2]] = true
      out[#out + 1] = f[2]
    end
  end
  table.sort(out)
  return out
end

local function reply(status, transition)
  local st = field('state')
  if st == '' then st = 'active' end
  local n = 0
  for _ in string.gmatch(field('fails'), '[^,]+') do n = n + 1 end
  return {status, st, num(numfield('cooling_until')), tostring(n), transition or '', note}
end

if doc.state == 'retired' then
  return reply('retired')
end

-- Step: the reporter. A report counts only from a node that is live (its
-- lease has not lapsed) and holds the group (granted, or revoked but not
-- yet released) or borrowed it lately: a borrow recorded by the acquire
-- script (KEYS[17]) proves the node used the key until its expiry, so the
-- node cannot report on a group it never used, nor long after. A report
-- made on an HTTP lease also needs the node's current session and a lease
-- that has not expired.
local borrower = false
local function check_reporter()
  if ARGV[26] ~= '' then
    local rec = redis.call('HGET', KEYS[18], node) or ''
    local _, _, session = string.find(rec, '^[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t([^\t]*)')
    if session ~= ARGV[26] then return 'session' end
  end
  local leaseUntil = tonumber(ARGV[27]) or 0
  if leaseUntil > 0 and now >= leaseUntil then return 'expired' end
  -- The lease is the namespace's stored TTL when there is one (the one
  -- reaps use), not whatever the caller says.
  local ttl = tonumber(redis.call('HGET', KEYS[12], 'ttl_ms') or '') or tonumber(ARGV[3])
  local beat = redis.call('ZSCORE', KEYS[8], node)
  if not beat or tonumber(beat) + ttl < now then
    return 'lapsed'
  end
  for g in string.gmatch(redis.call('HGET', KEYS[9], node) or '', '[^,]+') do
    if g == name then return '' end
  end
  for e in string.gmatch(redis.call('HGET', KEYS[10], node) or '', '[^,]+') do
    if string.match(e, '^(.*)@') == name or e == name then return '' end
  end
  local lent = tonumber(redis.call('ZSCORE', KEYS[17], node) or '')
  if lent and lent > now then
    borrower = true
    return ''
  end
  return 'notheld'
end

-- Step: the report rate, a GCRA per node (ARGV[24] ms per report, a burst
-- of ARGV[25]). A report over it writes nothing but limited_total.
-- (free_report below: a success that writes nothing is not counted.)
local function rate_limited()
  local interval, burst = tonumber(ARGV[24]), tonumber(ARGV[25])
  if interval <= 0 then return false end
  local tat = math.max(tonumber(redis.call('HGET', KEYS[16], node) or '0') or 0, now) + interval
  if tat - now > interval * burst then
    return true
  end
  redis.call('HSET', KEYS[16], node, num(tat))
  redis.call('PEXPIRE', KEYS[16], num(interval * burst + 60000))
  return false
end

-- A success about a group that is not probing and has no failure window
-- writes nothing: it takes no share of the node's rate, so an honest node
-- that reports every 2xx keeps its budget for the reports that act.
local function free_report()
  return op == 'success' and state ~= 'probing' and field('fails') == ''
end

if node ~= '' then
  local bad = check_reporter()
  if bad ~= '' then return reply(bad) end
  if not free_report() and rate_limited() then
    redis.call('HINCRBY', KEYS[2], 'limited_total', 1)
    return reply('limited')
  end
end

-- emit_reason is emit (common.lua) plus the reason field. nodes (a list,
-- may be nil) names the reporting nodes the decision rests on; the reason
-- text carries them as " [nodes: a,b]". rev (optional) is the group
-- revision the transition moved to.
local function emit_reason(typ, reason, nodes, rev)
  local named = {}
  for _, n in ipairs(nodes or {}) do
    if n ~= '' then named[#named + 1] = n end
  end
  if #named > 0 then
    reason = reason .. ' [nodes: ' .. table.concat(named, ',') .. ']'
  end
  local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*',
    'type', typ, 'group', name, 'node', node, 'epoch', '0',
    'version', num(tonumber(doc.version) or 0), 'by', ARGV[8], 'at', num(now),
    'reason', reason)
  local payload = cjson.encode({
    id = id, type = typ, group = name, node = node, epoch = 0,
    version = tonumber(doc.version) or 0, by = ARGV[8], at = now, reason = reason, rev = rev})
  publish(channel, typ, name, payload)
  if rev then
    -- A transition that moved the revision reaches the group catalogs too
    -- (keys.LendEvents): a suspended group is lent no more.
    redis.call('PUBLISH', channel .. ':lend', payload)
  end
end

local function unschedule_probe()
  redis.call('ZREM', KEYS[6], probeID)
  redis.call('HDEL', KEYS[7], probeID)
end

-- suspend turns the group suspended; wait > 0 schedules a probe after it.
local function suspend(reason, wait, nodes)
  redis.call('HSET', KEYS[2], 'state', 'suspended', 'reason', reason, 'since', num(now),
    'successes', '0', 'probe_wait', num(wait))
  redis.call('HDEL', KEYS[2], 'probe_nodes')
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
  local rev = redis.call('HINCRBY', KEYS[4], 'rev', 1)
  group_rev(KEYS[4], name, rev)
  emit_reason('group.suspended', reason, nodes, rev)
  return reply('ok', 'suspended')
end

local function clear_cooldown()
  redis.call('HDEL', KEYS[2], 'cooling_until', 'wait', 'long_node', 'long_at')
end

local function activate(typ, nodes)
  redis.call('HDEL', KEYS[2], 'state', 'fails', 'reason', 'since', 'next_probe', 'probe_wait', 'successes',
    'probe_nodes')
  unschedule_probe()
  redis.call('HDEL', KEYS[3], name)
  local rev = redis.call('HINCRBY', KEYS[4], 'rev', 1)
  group_rev(KEYS[4], name, rev)
  emit_reason(typ, '', nodes, rev)
end

local base, longest = tonumber(ARGV[6]), tonumber(ARGV[7])

-- count adds one to field of the current minute's usage (server time), the
-- HASH the limiter counts requests in, so `group usage` shows both.
local function count(f)
  local usage = KEYS[11] .. string.format('%.0f', math.floor(now / 60000))
  if redis.call('HINCRBY', usage, f, 1) == 1 then
    redis.call('EXPIRE', usage, ARGV[13])
  end
end

-- cool extends the cooldown to now + wait (only ever extended) and emits
-- group.throttled at most once per ARGV[21] ms (always with force).
local function cool(wait, why, nodes, force)
  if now + wait > numfield('cooling_until') then
    redis.call('HSET', KEYS[2], 'cooling_until', num(now + wait))
  end
  if force or now - numfield('throttle_event') >= tonumber(ARGV[21]) then
    redis.call('HSET', KEYS[2], 'throttle_event', num(now))
    emit_reason('group.throttled', why .. 'retry after ' ..
      num(math.max(numfield('cooling_until') - now, 0)) .. 'ms', nodes)
  end
end

-- Step: the wait of a throttle report. A Retry-After is taken as given up
-- to max_cooldown; a longer one needs a second holder asking for a long
-- wait within max_cooldown of the first (an operator's or the
-- coordinator's report needs none). None given: ARGV[18], doubling on
-- repeats up to ARGV[19], never above max_cooldown from one node.
local function throttle_wait(untilMs)
  local ra = tonumber(ARGV[4])
  if ra < 0 then
    if now < untilMs then
      -- Calls of the same burst arriving late: the cooldown already covers them.
      return 0, {node}
    end
    local last = numfield('wait')
    local wait = tonumber(ARGV[18])
    if last > 0 and now < untilMs + tonumber(ARGV[20]) then
      wait = math.min(last * 2, tonumber(ARGV[19]))
    end
    redis.call('HSET', KEYS[2], 'wait', num(wait))
    if node ~= '' then wait = math.min(wait, maxCooldown) end
    return wait, {node}
  end
  if node == '' or ra <= maxCooldown then
    return ra, {node}
  end
  local other, at = field('long_node'), numfield('long_at')
  if other ~= '' and other ~= node and now - at <= maxCooldown then
    return ra, {other, node}
  end
  redis.call('HSET', KEYS[2], 'long_node', node, 'long_at', num(now))
  note = 'cooldown'
  return maxCooldown, {node}
end

local function on_throttled()
  redis.call('HINCRBY', KEYS[2], 'throttles_total', 1)
  count('throttled')
  prune_fails()
  local wait, nodes = throttle_wait(numfield('cooling_until'))
  -- A long cooldown two holders agreed on is always told.
  cool(wait, '', nodes, #nodes > 1)
  return reply('ok')
end

-- Step: may this report suspend the group now? Returns '' or the note
-- saying why not: a group held by two or more nodes, or reported on by a
-- borrower, needs failures from at least two nodes in the window; a node whose report suspended a group
-- within the probe wait suspends no other; reports suspend at most
-- max_suspended percent of the pool's groups (at least one unless 0).
local function suspend_veto(nodes)
  if node == '' then return '' end
  local holders = tonumber(redis.call('HGET', KEYS[13], name) or '0') or 0
  -- A borrower is one user of a key others hold too (or will): its
  -- failures always need another node's.
  if borrower then holders = math.max(holders, 2) end
  if holders >= 2 and #nodes < 2 then return 'uncorroborated' end
  local last = tonumber(redis.call('HGET', KEYS[15], node) or '')
  if last and now - last < base then return 'ejector' end
  local pool = redis.call('SCARD', KEYS[14])
  local allowed = math.floor(pool * maxSuspended / 100)
  if maxSuspended > 0 and allowed < 1 then allowed = 1 end
  if redis.call('HEXISTS', KEYS[3], name) == 0 and redis.call('HLEN', KEYS[3]) >= allowed then
    return 'capped'
  end
  return ''
end

-- trim keeps at most cap failures: it drops the oldest failure of a node
-- that has several, so one node's repeats never push another's out.
local function trim(list, cap)
  while #list > cap do
    local per = {}
    for _, f in ipairs(list) do per[f[2]] = (per[f[2]] or 0) + 1 end
    local drop = 1
    for i, f in ipairs(list) do
      if per[f[2]] > 1 then drop = i break end
    end
    table.remove(list, drop)
  end
  return list
end

local function on_failure()
  if doc.state ~= 'active' then return reply('ignored') end
  redis.call('HINCRBY', KEYS[2], 'failures_total', 1)
  count('failures')
  local reason = ARGV[5]
  if state == 'probing' then
    -- The probing group is out of the pool already (one holder, in
    -- :unhealthy): a failed probe suspends it again, no veto applies.
    return suspend(reason, math.min(math.max(numfield('probe_wait'), base) * 2, longest), {node})
  end
  local list = window_fails()
  list[#list + 1] = {now, node}
  -- Only the newest `limit` failures can matter, and two for
  -- corroboration (eject_after 0: keep up to ARGV[16] of the display
  -- window).
  list = trim(list, limit > 0 and math.max(limit, 2) or tonumber(ARGV[16]))
  store_fails(list)
  if state ~= 'active' or limit == 0 or #list < limit then
    return reply('ok')
  end
  local nodes = distinct_nodes(list)
  note = suspend_veto(nodes)
  if note == 'capped' then
    cool(maxCooldown, 'suspension limit reached: cooling instead; ', nodes, true)
    return reply('ok')
  elseif note ~= '' then
    return reply('ok')
  end
  if node ~= '' then
    redis.call('HSET', KEYS[15], node, num(now))
    redis.call('PEXPIRE', KEYS[15], num(base))
  end
  return suspend(reason, base, nodes)
end

local function on_success()
  if doc.state ~= 'active' then return reply('ignored') end
  prune_fails()
  if state ~= 'probing' then return reply('ok') end
  local nodes = {}
  for n in string.gmatch(field('probe_nodes'), '[^,]+') do nodes[#nodes + 1] = n end
  local known = false
  for _, n in ipairs(nodes) do if n == node then known = true end end
  if not known then
    nodes[#nodes + 1] = node
    table.sort(nodes)
    redis.call('HSET', KEYS[2], 'probe_nodes', table.concat(nodes, ','))
  end
  if redis.call('HINCRBY', KEYS[2], 'successes', 1) >= tonumber(ARGV[17]) then
    activate('group.recovered', nodes)
    return reply('ok', 'recovered')
  end
  return reply('ok')
end

local function on_suspend()
  if doc.state ~= 'active' or state == 'suspended' then return reply('ignored') end
  -- An operator's suspension lasts until resume: no probe, no limit.
  return suspend(ARGV[5], 0, nil)
end

local function on_resume()
  clear_cooldown()
  activate('group.resumed', nil)
  return reply('ok', 'resumed')
end

local function on_cool_clear()
  clear_cooldown()
  emit_reason('group.cooldown_cleared', '', nil)
  return reply('ok', 'cleared')
end

local function on_probe()
  if redis.call('HEXISTS', KEYS[7], probeID) == 0 then
    return reply('claimed')
  end
  unschedule_probe()
  if state ~= 'suspended' or doc.state ~= 'active' then
    return reply('ignored')
  end
  redis.call('HSET', KEYS[2], 'state', 'probing', 'successes', '0')
  redis.call('HDEL', KEYS[2], 'next_probe', 'probe_nodes')
  redis.call('HSET', KEYS[3], name, 'probing\t' .. created)
  local rev = redis.call('HINCRBY', KEYS[4], 'rev', 1)
  group_rev(KEYS[4], name, rev)
  emit_reason('group.probing', field('reason'), nil, rev)
  return reply('ok', 'probing')
end

local ops = {
  throttled = on_throttled, failure = on_failure, success = on_success,
  suspend = on_suspend, resume = on_resume, cool_clear = on_cool_clear, probe = on_probe,
}
if ops[op] then return ops[op]() end
return redis.error_reply('health.lua: unknown op ' .. op)
