-- beat.lua: record one beat of a node and tell it whether anything changed.
-- One script = one round trip; liveness uses the server clock (TIME).
-- A beat comes from the least trusted process of the system: the script
-- checks everything it is sent, and every bound, before its first write.
--
-- KEYS[1] :nodes    ZSET node ID -> last beat (ms, server time)
-- KEYS[2] :state    HASH epoch, rev, mver, prev, pmver; dwait ("1" while a
--                   stored demand change waits for its plan) and dat (ms of
--                   the last demand-caused mver bump)
-- KEYS[3] :members  HASH node ID -> "joined\tip\tpreferred\theld\tack\t
--                   session\tpref_at\tpref_wait\tcalls\ttokens" (calls and
--                   tokens: the stored demand per second, "" = none sent)
-- KEYS[4] :log:nodes STREAM of node events (node.joined), apart from the
--                   audit stream :log so no volume of nodes evicts a group entry
-- KEYS[5] :schedule ZSET scheduled change IDs -> due time (ms)
-- KEYS[6] :revoked  HASH node ID -> groups revoked but maybe still in use
-- KEYS[7] :assign   HASH node ID -> comma-joined sorted groups (registry's)
-- KEYS[8] :holders  HASH group -> holder count (registry's)
-- KEYS[9] :settings HASH ttl_ms, interval_ms, max_live_nodes: the namespace's
--                   stored values win over ARGV[6], ARGV[10] and ARGV[16]
-- ARGV[1] node ID
-- ARGV[2] ip
-- ARGV[3] preferred group ("" = none)
-- ARGV[4] held groups, comma-joined, sorted and unique
-- ARGV[5] ack (assignment epoch that held reflects)
-- ARGV[6] TTL in ms, used when :settings stores none
-- ARGV[7] events channel
-- ARGV[8] approximate MAXLEN of the node log stream
-- ARGV[9] session of the beating process
-- ARGV[10] heartbeat interval in ms (at most one preferred-caused mver bump
--          per interval), used when :settings stores none
-- ARGV[11] group revision the node's view covers (0 = unknown): with ack,
--          lets a steady beat skip heldRev and entry (below)
-- ARGV[12] most held names a beat may send
-- ARGV[13] longest node ID, in bytes
-- ARGV[14] longest ip, in bytes
-- ARGV[15] longest session, in bytes
-- ARGV[16] most live nodes (0 = no limit), used when :settings stores none
-- ARGV[17] demand: calls asked for per second ("" with ARGV[18] = none sent)
-- ARGV[18] demand: tokens asked for per second
-- ARGV[19] largest demand figure accepted
-- ARGV[20] relative change of a figure that is stored (smaller ones are not)
-- ARGV[21] smallest change of the calls figure that is stored
-- ARGV[22] smallest change of the tokens figure that is stored
-- ARGV[23] intervals between two demand-caused plans, at least
--
-- Reply: {epoch, rev, work (0|1), joined (0|1), now (ms), first (0|1),
--        heldRev, entry (see below), dirty (0|1), k = how many held names
--        were ignored, their k positions in ARGV[4] (1-based), then the
--        count of each held group in ARGV[4] order when entry is 1}
-- first: this node is the one to plan the pending work now (see below).
-- Or {-1, until (ms), now (ms)} when the ID is live under another session:
-- then nothing is written, and the ID stays taken until `until` unless its
-- owner beats again.
-- Or {-2, live, max} when the beat would join while max nodes are live:
-- nothing is written.
-- Or the error "INVALIDBEAT <what>" for a malformed beat (a demand figure
-- that is not a plain decimal in [0, ARGV[19]] included): nothing is written.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowStr = string.format('%.0f', now)
local id = ARGV[1]
local session = ARGV[9]
local held = ARGV[4]

-- Validation, before anything is written.
local function invalid(what)
  return redis.error_reply('INVALIDBEAT ' .. what)
end
-- groupName: the group-name rule (internal/keys GroupNameRule).
local function groupName(g)
  return #g <= 63 and string.find(g, '^[a-z0-9][a-z0-9%._%-]*$') ~= nil
end
if id == '' or #id > tonumber(ARGV[13]) or string.find(id, '[%c%s,]') then
  return invalid('node id')
end
if #ARGV[2] > tonumber(ARGV[14]) or string.find(ARGV[2], '%c') then
  return invalid('ip')
end
if ARGV[3] ~= '' and not groupName(ARGV[3]) then
  return invalid('preferred group')
end
if session == '' or #session > tonumber(ARGV[15]) or not string.find(session, '^[%w_%-]+$') then
  return invalid('session')
end
if not string.find(ARGV[5], '^%-?%d+$') or #ARGV[5] > 20 or not string.find(ARGV[11], '^%-?%d+$') or #ARGV[11] > 20 then
  return invalid('ack or rev')
end
-- Demand: both figures or neither, each a plain decimal (no sign, exponent,
-- "nan" or "inf": Lua's tonumber would take those) within the bound.
local demandSent = ARGV[17] ~= '' or ARGV[18] ~= ''
local demandCalls, demandTokens
if demandSent then
  local function figure(v)
    if #v > 24 or not (string.find(v, '^%d+$') or string.find(v, '^%d+%.%d+$')) then
      return nil
    end
    local n = tonumber(v)
    if not n or n > tonumber(ARGV[19]) then
      return nil
    end
    return n
  end
  demandCalls = figure(ARGV[17])
  if not demandCalls then
    return invalid('demand: calls per second is not a number in [0, ' .. ARGV[19] .. ']')
  end
  demandTokens = figure(ARGV[18])
  if not demandTokens then
    return invalid('demand: tokens per second is not a number in [0, ' .. ARGV[19] .. ']')
  end
end
local maxHeld = tonumber(ARGV[12])
local names = {}
if held ~= '' then
  -- The length bound first, so an oversized list costs no split.
  if #held > maxHeld * 64 then
    return invalid('held: too many names')
  end
  local i = 1
  while true do
    local j = string.find(held, ',', i, true)
    local g = string.sub(held, i, (j or 0) - 1)
    if not groupName(g) then
      return invalid('held: not a group name')
    end
    if #names > 0 and g <= names[#names] then
      return invalid('held: not sorted and unique')
    end
    names[#names + 1] = g
    if #names > maxHeld then
      return invalid('held: too many names')
    end
    if not j then
      break
    end
    i = j + 1
  end
end

-- The namespace's stored settings win over the caller's: a process started
-- with another TTL cannot judge liveness (the session check, the work, the
-- live count) by it.
local stored = redis.call('HMGET', KEYS[9], 'ttl_ms', 'interval_ms', 'max_live_nodes')
local function setting(v, default)
  local n = tonumber(v or '')
  if n and n >= 0 then
    return n
  end
  return tonumber(default)
end
local ttl = setting(stored[1], ARGV[6])
if ttl <= 0 then
  ttl = tonumber(ARGV[6])
end
local interval = setting(stored[2], ARGV[10])
local maxLive = setting(stored[3], ARGV[16])

-- fields splits a record at its tabs.
local function fields(s)
  local f, i = {}, 1
  while true do
    local j = string.find(s, '\t', i, true)
    if not j then
      f[#f + 1] = string.sub(s, i)
      return f
    end
    f[#f + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local old = redis.call('HGET', KEYS[3], id)
local seen = redis.call('ZSCORE', KEYS[1], id)
local f = old and fields(old) or {}
local sameSession = (f[6] or '') == session
-- A live ID belongs to its session: another process beating with it is
-- refused before anything is written, so two processes never share an ID.
-- An expired one (past the TTL, not yet reaped) may be taken over.
if old and seen and not sameSession and tonumber(seen) >= now - ttl then
  return {-1, tonumber(seen) + ttl, now}
end
local joins = not old or not seen or not sameSession
-- A join that would pass the namespace's live-node cap is refused; the
-- nodes already in keep beating.
if joins and maxLive > 0 then
  local live = redis.call('ZCOUNT', KEYS[1], string.format('%.0f', now - ttl), '+inf')
  if live >= maxLive then
    return {-2, live, maxLive}
  end
end

-- Claims: held counts only the groups this node may hold, those of its
-- :assign entry and its :revoked entries. Other names are not stored (a
-- claim on a group the node was never given would block its capped grant)
-- and are reported back, by position, for the caller to log.
local entryRaw = redis.call('HGET', KEYS[7], id)
local entryNow = entryRaw or ''
local kept, ignored = held, {}
if held ~= '' and entryNow ~= held then
  local may = {}
  for g in string.gmatch(entryNow, '[^,]+') do
    may[g] = true
  end
  for e in string.gmatch(redis.call('HGET', KEYS[6], id) or '', '[^,]+') do
    may[string.match(e, '^(.*)@') or e] = true
  end
  local k = {}
  for i, g in ipairs(names) do
    if may[g] then
      k[#k + 1] = g
    else
      ignored[#ignored + 1] = i
    end
  end
  kept = table.concat(k, ',')
end

-- The fields every beat sends; the rest of the record is the script's own.
local sent = ARGV[2] .. '\t' .. ARGV[3] .. '\t' .. kept .. '\t' .. ARGV[5] .. '\t' .. session

-- Demand hysteresis: the stored figures change only when one moved by more
-- than ARGV[20] of its stored value (and at least its floor), so a steady
-- demand writes nothing and, stored as it was, moves nobody. A beat without
-- demand keeps what is stored. A join stores what it sent (or none).
local storedCalls, storedTokens = f[9] or '', f[10] or ''
local demandMoved = false
if joins then
  storedCalls, storedTokens = ARGV[17], ARGV[18]
elseif demandSent then
  local rel = tonumber(ARGV[20])
  local function moved(new, old, floor)
    old = tonumber(old)
    return not old or math.abs(new - old) > math.max(rel * old, tonumber(floor))
  end
  if moved(demandCalls, storedCalls, ARGV[21]) or moved(demandTokens, storedTokens, ARGV[22]) then
    storedCalls, storedTokens = ARGV[17], ARGV[18]
    demandMoved = true
  end
end
local demandRec = '\t' .. storedCalls .. '\t' .. storedTokens

local joined = 0
local bump = false
if joins then
  -- A new node, or a new session taking over an expired ID: a join. The
  -- join's mver bump counts as the preferred group's, for the rate limit.
  joined = 1
  bump = true
  redis.call('HSET', KEYS[3], id, nowStr .. '\t' .. sent .. '\t' .. nowStr .. '\t' .. demandRec)
else
  -- A new preferred group is a membership change, but bumps mver (which
  -- makes every node's next beat ask for a rebalance) at most once per
  -- interval: a change inside the window waits (pref_wait = 1) and is
  -- bumped by the first beat after it, so it is still honoured.
  local prefAt = tonumber(f[7] or '') or 0
  local wait = f[8] == '1' or f[3] ~= ARGV[3]
  if wait and now - prefAt >= interval then
    bump = true
    wait = false
    prefAt = now
  end
  local rec = f[1] .. '\t' .. sent .. '\t' .. string.format('%.0f', prefAt) .. '\t' .. (wait and '1' or '') .. demandRec
  -- Most beats change nothing but the score and write nothing else (every
  -- write is replicated).
  if rec ~= old then
    redis.call('HSET', KEYS[3], id, rec)
  end
end
redis.call('ZADD', KEYS[1], nowStr, id)
if bump then
  redis.call('HINCRBY', KEYS[2], 'mver', 1)
end

local st = redis.call('HMGET', KEYS[2], 'epoch', 'rev', 'mver', 'prev', 'pmver', 'dwait', 'dat')
local epoch = tonumber(st[1] or '0') or 0
local rev = tonumber(st[2] or '0') or 0
local mver = tonumber(st[3] or '0') or 0
local prev = tonumber(st[4] or '0') or 0
local pmver = tonumber(st[5] or '0') or 0

-- A stored demand change asks for a plan (an mver bump, as a preferred
-- change does) at most once per ARGV[23] intervals: one that comes sooner
-- waits (dwait) and the first beat of any node past the gap bumps for it,
-- so one plan covers every change meanwhile.
if demandMoved or st[6] then
  if now - (tonumber(st[7] or '0') or 0) >= tonumber(ARGV[23]) * interval then
    mver = redis.call('HINCRBY', KEYS[2], 'mver', 1)
    redis.call('HSET', KEYS[2], 'dat', nowStr)
    if st[6] then
      redis.call('HDEL', KEYS[2], 'dwait')
    end
  elseif not st[6] then
    redis.call('HSET', KEYS[2], 'dwait', '1')
  end
end

-- heldRev: the group revision of the last write to a group this node holds
-- (registry's :state "r:<group>" fields), so a node — which hears only its
-- own groups' events — knows whether a revision it sees moved for it. A
-- held group without a field (deleted, or not written since the fields
-- exist) counts as changed at the current revision.
local heldRev = 0
if ARGV[4] ~= '' and tonumber(ARGV[11] or '0') ~= rev then
  local fields = {}
  for k, g in ipairs(names) do
    fields[k] = 'r:' .. g
  end
  local revs = redis.call('HMGET', KEYS[2], unpack(fields))
  for k = 1, #fields do
    heldRev = math.max(heldRev, tonumber(revs[k] or rev) or rev)
  end
end

if joined == 1 then
  local xid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
    'type', 'node.joined', 'group', '', 'node', id, 'epoch', epoch,
    'version', 0, 'by', id, 'at', nowStr)
  redis.call('PUBLISH', ARGV[7], cjson.encode({
    id = xid, type = 'node.joined', group = '', node = id, epoch = epoch,
    version = 0, by = id, at = now}))
end

-- Work, cheapest test first. The lowest score of :nodes / :schedule says
-- whether any node is past its TTL / any schedule is due.
local work = 0
local sig = ''
if mver ~= pmver or rev ~= prev then
  work = 1
  sig = 'm' .. mver .. ':' .. rev
else
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest == 2 and (tonumber(oldest[2]) or now) < now - ttl then
    work = 1
    sig = 'r'
  else
    local due = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    if #due == 2 and (tonumber(due[2]) or now + 1) <= now then
      work = 1
      sig = 's'
    elseif redis.call('HEXISTS', KEYS[6], id) == 1 then
      work = 1
    end
  end
end

-- No herd at the lock: the first beat to see a piece of work (sig) claims
-- it (:state wsig, wat) and only that node plans; the others wait, unless
-- the claim is older than TTL/3 (about an interval) with the work still
-- pending — its planner died or lost the race — and then the next beat
-- claims it again. A node's own revoked entry is its own work.
local first = 0
if work == 1 then
  if sig == '' then
    first = 1
  else
    local claim = redis.call('HMGET', KEYS[2], 'wsig', 'wat')
    if claim[1] ~= sig or now - (tonumber(claim[2]) or 0) >= ttl / 3 then
      redis.call('HSET', KEYS[2], 'wsig', sig, 'wat', nowStr)
      first = 1
    end
  end
end

-- entry: 1 when the node's committed entry is exactly the groups it reports
-- held, with their holder counts after it and dirty (a leave or reap changed
-- counts since the last commit): a node that read those groups at an older
-- epoch, and whose epoch no event brought, takes the new epoch and shares
-- from the beat instead of reading — after a change elsewhere in the pool
-- only the nodes it concerns get an event at all.
-- A node whose ack is the current epoch has nothing to take: skip it.
local entry, dirty = 0, 0
if tonumber(ARGV[5]) ~= epoch then
  if entryRaw == held then
    entry = 1
  end
  if redis.call('HEXISTS', KEYS[2], 'dirty') == 1 then
    dirty = 1
  end
end
local reply = {epoch, rev, work, joined, now, first, heldRev, entry, dirty, #ignored}
for _, i in ipairs(ignored) do
  reply[#reply + 1] = i
end
if entry == 1 then
  for _, g in ipairs(names) do
    reply[#reply + 1] = tonumber(redis.call('HGET', KEYS[8], g) or '0') or 0
  end
end
return reply
