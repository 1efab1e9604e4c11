-- commit.lua: apply the changed entries of a planned assignment if the epoch
-- it was planned from is still current. The caller sends only what differs
-- from the assignment it planned from, so a commit costs what changed, not the
-- size of the pool. Holder counts (:holders) are adjusted per entry from the
-- value actually stored, so they stay exact even when a reap or leave removed
-- an entry in between. Groups deleted since the plan are dropped from the
-- entries written. When nothing differs from what is stored only prev/pmver
-- are recorded: no epoch bump, no event.
--
-- KEYS[1] :state   HASH epoch, prev, pmver, dirty (set by a reap or leave
--                  that removed an entry: the next commit bumps the epoch),
--                  dirtyg (the groups those removals took a holder from,
--                  comma-joined, or "*" = too many to name)
-- KEYS[2] :assign  HASH node ID -> comma-joined sorted groups ("" = standby)
-- KEYS[3] :revoked HASH node ID -> comma-joined revoked entries "group@epoch"
--                  (the rebalancer's, stored as given, never filtered)
-- KEYS[4] :groups  SET group names
-- KEYS[5] :log     STREAM events
-- KEYS[6] :holders HASH group -> number of nodes assigned it
-- KEYS[7] :nodes   ZSET registered nodes (heartbeat's): an entry is written
--                  only for a node still registered, so a node reaped or gone
--                  since the plan was read never gets one back — when it
--                  re-registers it can only read entries of plans that saw it
--                  live, with no commit in between
-- ARGV[1]  epoch the plan was computed from
-- ARGV[2]  rev the plan was computed from (stored as prev)
-- ARGV[3]  mver the plan was computed from (stored as pmver)
-- ARGV[4]  by
-- ARGV[5]  events channel
-- ARGV[6]  log MAXLEN
-- ARGV[7]  G: distinct groups named in the node entries to set
-- ARGV[8]  NS: node entries to set       ARGV[9]  ND: node entries to delete
-- ARGV[10] RS: revoked entries to set    ARGV[11] RD: revoked entries to delete
-- ARGV[12 ..] the G group names, then NS (node, groups) pairs, then ND node
--             IDs, then RS (node, entries) pairs, then RD node IDs
--
-- ARGV[12 + all of the above] max node IDs an event names (256)
--
-- The assignment event names what changed, so that a node not concerned
-- adopts the new epoch without a read (registry.Event.Concerns):
--   scope "nodes"  nodes = IDs whose entry changed (at most the max),
--                  groups = groups whose holder count (so share) changed
--                  since the last commit (leaves and reaps included),
--                  holders = {group: new holder count} of those groups
--   scope "groups" more nodes changed than the max: groups also lists every
--                  group of their old and new entries; nodes holding no
--                  group read too
--   no scope       too much to name (dirtyg "*", or over 1024 groups):
--                  every node reads
--
-- Reply: {"stale", current epoch, rev, mver} | {"same", epoch, rev, mver} |
-- {"ok", new epoch, rev, mver}: rev and mver are the current group revision
-- and membership version, so a planner learns without another read whether
-- anything moved while it planned.
local st = redis.call('HMGET', KEYS[1], 'epoch', 'dirty', 'dirtyg', 'rev', 'mver')
local epoch = tonumber(st[1] or '0') or 0
local rev, mver = st[4] or '0', st[5] or '0'
if epoch ~= tonumber(ARGV[1]) then
  return {'stale', num(epoch), rev, mver}
end

local ng, ns, nd = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local rs, rd = tonumber(ARGV[10]), tonumber(ARGV[11])
local i = 12
local chunk = 2000

-- Which of the named groups are gone? Usually none.
local missing = nil
for s = i, i + ng - 1, chunk do
  local e = math.min(s + chunk - 1, i + ng - 1)
  local present = redis.call('SMISMEMBER', KEYS[4], unpack(ARGV, s, e))
  for j = 1, #present do
    if present[j] == 0 then
      missing = missing or {}
      missing[ARGV[s + j - 1]] = true
    end
  end
end
i = i + ng

local function drop_missing(v)
  if not missing or v == '' then return v end
  local out = {}
  for g in string.gmatch(v, '[^,]+') do
    if not missing[g] then out[#out + 1] = g end
  end
  return table.concat(out, ',')
end

-- What the event will name: touched nodes, and the net holder change of
-- each group (a group moved off and back is no change of share).
local touched, ntouched = {}, 0
local delta = {}
local function touch(id)
  if not touched[id] then
    touched[id] = true
    ntouched = ntouched + 1
  end
end

local function count(v, d)
  if not v then return end
  for g in string.gmatch(v, '[^,]+') do
    delta[g] = (delta[g] or 0) + d
    if redis.call('HINCRBY', KEYS[6], g, d) <= 0 then
      redis.call('HDEL', KEYS[6], g)
    end
  end
end

-- Old and new entries of the touched nodes, kept only until the event
-- would name too many nodes anyway (then their groups are named instead).
local entries = {}
local function changed_entry(id, old, new)
  touch(id)
  entries[#entries + 1] = old or ''
  entries[#entries + 1] = new or ''
end

-- A reap or leave removed entries since the last commit: the survivors'
-- holder counts changed, so this commit is a change even if no entry differs.
local changed = st[2] ~= false and st[2] ~= nil
for _ = 1, ns do
  local id, v = ARGV[i], drop_missing(ARGV[i + 1])
  local old = redis.call('HGET', KEYS[2], id)
  if not redis.call('ZSCORE', KEYS[7], id) then
    -- Gone since the plan was read (its entry was already removed then).
    if old then
      count(old, -1)
      redis.call('HDEL', KEYS[2], id)
      changed = true
      changed_entry(id, old, '')
    end
  elseif old ~= v then
    count(old, -1)
    count(v, 1)
    redis.call('HSET', KEYS[2], id, v)
    changed = true
    changed_entry(id, old, v)
  end
  i = i + 2
end
for _ = 1, nd do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if old then
    count(old, -1)
    redis.call('HDEL', KEYS[2], ARGV[i])
    changed = true
    changed_entry(ARGV[i], old, '')
  end
  i = i + 1
end
for _ = 1, rs do
  if redis.call('ZSCORE', KEYS[7], ARGV[i]) and redis.call('HGET', KEYS[3], ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    changed = true
  end
  i = i + 2
end
for _ = 1, rd do
  if redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    changed = true
  end
  i = i + 1
end

redis.call('HSET', KEYS[1], 'prev', ARGV[2], 'pmver', ARGV[3])
if not changed then
  return {'same', num(epoch), rev, mver}
end
redis.call('HDEL', KEYS[1], 'dirty', 'dirtyg')
epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)

-- Name what changed (see the header).
local maxNodes = tonumber(ARGV[i]) or 256
local scope = 'nodes'
local gset = {}
-- Each group in dirtyg lost one holder (per occurrence) since the last
-- commit: with this commit's own changes, the net change from the counts
-- the nodes last read. A group back at its old count is not named: its
-- holders' shares are what they read. (A node that read between the
-- removal and now saw the dirty count; its read says so and it re-reads on
-- the next event, see node_assignment.lua.)
local dirtyg = st[3]
if dirtyg == '*' then
  scope = ''
elseif dirtyg and dirtyg ~= '' then
  for g in string.gmatch(dirtyg, '[^,]+') do delta[g] = (delta[g] or 0) - 1 end
end
for g, d in pairs(delta) do
  if d ~= 0 then gset[g] = true end
end
local nodes = {}
if scope ~= '' then
  if ntouched > maxNodes then
    scope = 'groups'
    for _, v in ipairs(entries) do
      for g in string.gmatch(v, '[^,]+') do gset[g] = true end
    end
  else
    for id in pairs(touched) do nodes[#nodes + 1] = id end
    table.sort(nodes)
  end
end
local groups = {}
for g in pairs(gset) do groups[#groups + 1] = g end
if #groups > 1024 then
  scope = ''
end
local at = now_ms()
if scope == '' then
  emit(KEYS[5], ARGV[5], ARGV[6], 'assignment', '', '', ARGV[4], epoch, 0, at)
  return {'ok', num(epoch), rev, mver}
end
table.sort(groups)
-- Under scope "nodes" the event also carries the new holder count of each
-- named group, so a holder whose own entry did not change takes its new
-- share from the event instead of reading it.
local counts, holders = {}, {}
if scope == 'nodes' then
  for k, g in ipairs(groups) do
    local n = tonumber(redis.call('HGET', KEYS[6], g) or '0') or 0
    counts[k] = num(n)
    holders[g] = n
  end
end
local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*',
  'type', 'assignment', 'group', '', 'node', '', 'epoch', num(epoch),
  'version', '0', 'by', ARGV[4], 'at', num(at),
  'scope', scope, 'nodes', table.concat(nodes, ','), 'groups', table.concat(groups, ','),
  'holders', table.concat(counts, ','))
local ev = {id = id, type = 'assignment', group = '', node = '', epoch = epoch,
  version = 0, by = ARGV[4], at = at, scope = scope}
-- cjson writes an empty table as {}: leave empty lists out.
if #nodes > 0 then ev.nodes = nodes end
if #groups > 0 then ev.groups = groups end
if #counts > 0 then ev.holders = holders end
local payload = cjson.encode(ev)
-- An event that names what changed goes only to the nodes it concerns: to
-- each named node on its own channel (keys.Keys.NodeEvents), then to the
-- holders of each named group on the group's channel (they take their new
-- share from it, or read). Every other node learns the epoch from its next
-- beat, which says its entry and counts are unchanged (heartbeat's
-- beat.lua), so a change costs deliveries to the nodes it concerns, not to
-- the whole pool. Watchers get it on the events channel.
for _, id in ipairs(nodes) do
  redis.call('PUBLISH', ARGV[5] .. ':node:' .. id, payload)
end
for _, g in ipairs(groups) do
  redis.call('PUBLISH', ARGV[5] .. ':group:' .. g, payload)
end
redis.call('PUBLISH', ARGV[5], payload)
return {'ok', num(epoch), rev, mver}
