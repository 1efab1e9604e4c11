-- lease.lua: the limiter's side of a lease (quota.Limiter.Acquire and
-- SettleLease), with gcra.lua prepended.
--
-- Acquire (ARGV[1] = "acquire"): one call of ARGV[2] requests and ARGV[3]
-- tokens from the best of several candidate groups, all limits of it or
-- none, in one step. Held candidates come first, in the caller's order:
-- the first whose limits all let the call through takes it. Only when none
-- does are the lent candidates weighed (the groups the caller borrows
-- from): each must still be lendable as its document says now (the
-- version the caller knows, active, max_nodes 0, lend not false, neither
-- suspended nor probing, not cooling) with the namespace's lending not
-- "off", and the one whose tightest limit has the largest share of its
-- burst left after the call takes it (read from the GCRA state here, so
-- the choice is the room the limits have now). A borrowed call costs what
-- a holder's costs (same limits, same usage minute) and also counts
-- "borrowed" in the usage minute, and records the borrow (KEYS borrowers:
-- node -> now + ARGV[13] ms) so the node's report on the key counts
-- (health.lua). A refusal writes nothing but one "rejected", on the
-- candidate with the shortest wait.
-- Settle (ARGV[1] = "settle"): a lease's settle, once: ARGV[3] tokens
-- (negative = refund) on the one candidate, as limiter.lua's settle, only
-- while the lease has not expired (ARGV[13], ms server time) and only the
-- first time (the record KEYS[6] is created with the settle and expires
-- with the lease).
-- Guard (ARGV[10] session not ""): the call is refused, writing nothing,
-- unless the members record of node ARGV[9] (heartbeat's: the session is
-- its 6th tab-separated field) carries that session; an acquire also needs
-- the node live (its last beat within :settings ttl_ms, ARGV[11] when none
-- is stored) and its :assign entry to be ARGV[12], the held groups the
-- candidates were built from (else the reply gives the entry).
--
-- KEYS[1] :settings   HASH lending ("off" = lend nothing), ttl_ms
-- KEYS[2] :state      HASH rev (read: the reply carries it)
-- KEYS[3] :members    HASH node -> record (guard)
-- KEYS[4] :nodes      ZSET node -> last beat ms (guard)
-- KEYS[5] :assign     HASH node -> comma-joined held groups (guard)
-- KEYS[6] settle: :settled:<lease id>, the once record; acquire: unused
-- KEYS[7..] per candidate, 5 keys: :quota:<g>, :health:<g>, :usage:<g>:
--          (prefix), :group:<g>, :borrowers:<g>
-- ARGV[1]  "acquire" | "settle"
-- ARGV[2]  requests (acquire 0..max cost; settle 0)
-- ARGV[3]  tokens (acquire 0..max cost; settle ±max cost)
-- ARGV[4]  settle: the lease's usage minute (at most the current one)
-- ARGV[5]  usage TTL in seconds
-- ARGV[6..8] max cost, max refill µs, max limits (as limiter.lua)
-- ARGV[9]  node ID (needed for a lent candidate or a guard)
-- ARGV[10] session ("" = no guard)
-- ARGV[11] the node's TTL in ms when :settings stores none (guard)
-- ARGV[12] acquire with a guard: the :assign entry expected
-- ARGV[13] acquire: ms a borrow counts as proof of use; settle: the
--          lease's expiry, Unix ms
-- ARGV[14] max candidates (quota.MaxCandidates)
-- ARGV[15] candidate count c (settle: 1)
-- ARGV[16..] per candidate: lent ("1" | "0"), version (lent: the document
--          version the caller knows), limit count n, then n × 5 limit
--          values (field, kind, period µs, rate, burst) as limiter.lua's
--
-- Reply, acquire:
--   {"ok", i, limit, minute, remaining, reset, rev, codes, now}: candidate
--     i (1-based) took the call; limit, remaining, reset as limiter.lua's;
--     now is the server time in ms (a lease's expiry counts from it)
--   {"refused", i, limit, retry µs, remaining, reset, rev, codes, now}: none
--     could; i is the one with the shortest wait, limit 0 = cooling
--   {"none", 0, 0, 0, 0, 0, rev, codes, now}: no candidate could be weighed
--   {"session"} | {"lapsed"} | {"held", entry} (guard)
--   codes: one letter per candidate: a taken, r refused by a limit,
--   c cooling, g group gone, s stale (another version), n not lendable
--   (state, max_nodes, lend, suspended, probing), o lending off, - not
--   taken (not weighed: another took the call first; or a lent candidate
--   with less room than the one taken)
-- Reply, settle: {"ok", limit, minute, remaining, reset} | {"settled"} |
--   {"expired"} | {"gone"} | {"session"}
local mode = ARGV[1]
if mode ~= 'acquire' and mode ~= 'settle' then return fail('unknown mode') end
local B = read_bounds(6)
if not B then return fail('bad bounds') end
local reqs = int(ARGV[2], 0, B.cost)
local toks = int(ARGV[3], 0, B.cost)
if mode == 'settle' then toks = int(ARGV[3], -B.cost, B.cost) end
local ttl = int(ARGV[5], 1, 2 ^ 31)
local window = int(ARGV[13], 0, 2 ^ 50)
local maxCands = int(ARGV[14], 1, 256)
if not reqs or not toks or not ttl or not window or not maxCands then return fail('bad cost, ttl or window') end
local node, session = ARGV[9] or '', ARGV[10] or ''
local c = int(ARGV[15], 0, maxCands)
if not c or (mode == 'settle' and c ~= 1) or #KEYS ~= 6 + 5 * c then return fail('bad candidate count') end

-- The candidates, every one checked before anything is read or written.
local cands, at = {}, 16
for i = 1, c do
  local lent, version, n = ARGV[at], int(ARGV[at + 1], 0, 2 ^ 53), int(ARGV[at + 2], 0, B.limits)
  if (lent ~= '0' and lent ~= '1') or not version or not n then return fail('bad candidate ' .. i) end
  local L, why
  if mode == 'acquire' then
    L, why = read_limits(at + 3, n, B, reqs, toks)
  else
    L, why = read_limits(at + 3, n, B)
  end
  if not L then return fail('candidate ' .. i .. ': ' .. why) end
  local k = 6 + 5 * (i - 1)
  cands[i] = {lent = lent == '1', version = version, L = L,
    quota = KEYS[k + 1], health = KEYS[k + 2], usage = KEYS[k + 3], group = KEYS[k + 4], borrowers = KEYS[k + 5]}
  if cands[i].lent and node == '' then return fail('a lent candidate needs a node') end
  at = at + 3 + 5 * n
end
if at ~= #ARGV + 1 then return fail('bad candidate count') end

-- The guard: the node's current session (and, to acquire, its lease and
-- its held groups).
if session ~= '' then
  local rec = redis.call('HGET', KEYS[3], node) or ''
  local _, _, s = string.find(rec, '^[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t([^\t]*)')
  if s ~= session then return {'session'} end
  if mode == 'acquire' then
    local nodeTTL = tonumber(redis.call('HGET', KEYS[1], 'ttl_ms') or '') or tonumber(ARGV[11]) or 0
    local beat = tonumber(redis.call('ZSCORE', KEYS[4], node) or '')
    local t = redis.call('TIME')
    if not beat or beat + nodeTTL < tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000) then
      return {'lapsed'}
    end
    local entry = redis.call('HGET', KEYS[5], node) or ''
    if entry ~= ARGV[12] then return {'held', entry} end
  end
end

local now, minute = server_now()
local nowMs = floor(now / 1000)

if mode == 'settle' then
  local cd = cands[1]
  local m = int(ARGV[4], 0, minute)
  if not m then return fail('bad minute') end
  if nowMs >= window then return {'expired'} end
  if redis.call('EXISTS', KEYS[6]) == 1 then return {'settled'} end
  if redis.call('EXISTS', cd.group) == 0 then return {'gone'} end
  local news = settle(cd.L, read_tats(cd.L, cd.quota, now), toks, now)
  save(cd.L, cd.quota, news, now)
  settle_usage(cd.usage, m, toks, ttl, now)
  redis.call('SET', KEYS[6], '1', 'PX', window - nowMs)
  local best, _, rem, reset = tightest(cd.L, news, now)
  return {'ok', best, m, rem, reset}
end

local rev = redis.call('HGET', KEYS[2], 'rev') or '0'
local codes, best = {}, nil -- best: the refusal with the shortest wait
for i = 1, c do codes[i] = '-' end
local function refused(i, code, limit, wait, rem, reset)
  codes[i] = code
  if not best or wait < best.wait then best = {i = i, limit = limit, wait = wait, rem = rem, reset = reset} end
end

-- weigh sees whether candidate i can take the call now: the new TATs and
-- the share of its tightest limit left after it, or nil (refused).
local function weigh(i)
  local cd = cands[i]
  local cool = cooling_until(cd.health, now)
  if cool then
    local wait = min(cool - now, B.refill)
    refused(i, 'c', 0, wait, 0, wait)
    return nil
  end
  local tats = read_tats(cd.L, cd.quota, now)
  local news, worst, wait = take(cd.L, tats, reqs, toks, now)
  if worst > 0 then
    refused(i, 'r', worst, wait, left(cd.L, worst, tats[worst], now), tats[worst] - now)
    return nil
  end
  local _, share = tightest(cd.L, news, now)
  return news, share
end

-- grant takes the call from candidate i at TATs news.
local function grant(i, news)
  local cd = cands[i]
  codes[i] = 'a'
  save(cd.L, cd.quota, news, now)
  local usage = cd.usage .. minute
  if redis.call('HINCRBY', usage, 'requests', reqs) == reqs then redis.call('EXPIRE', usage, ttl) end
  if toks > 0 then redis.call('HINCRBY', usage, 'tokens', toks) end
  if cd.lent then
    redis.call('HINCRBY', usage, 'borrowed', 1)
    redis.call('ZREMRANGEBYSCORE', cd.borrowers, '-inf', nowMs)
    redis.call('ZADD', cd.borrowers, nowMs + window, node)
    redis.call('PEXPIRE', cd.borrowers, window + 1000)
  end
  local b, _, rem, reset = tightest(cd.L, news, now)
  return {'ok', i, b, minute, rem, reset, rev, table.concat(codes), nowMs}
end

-- Held candidates: the first that can take the call does.
local anyLent = false
for i = 1, c do
  if cands[i].lent then
    anyLent = true
  elseif redis.call('EXISTS', cands[i].group) == 0 then
    codes[i] = 'g'
  else
    local news = weigh(i)
    if news then return grant(i, news) end
  end
end

-- Lent candidates: the most room now.
if anyLent then
  local off = redis.call('HGET', KEYS[1], 'lending') == 'off'
  local pick, pickNews, pickShare = nil, nil, -1
  for i = 1, c do
    local cd = cands[i]
    if cd.lent then
      local raw = redis.call('GET', cd.group)
      local ok, doc = false, nil
      if raw then ok, doc = pcall(cjson.decode, raw) end
      if off then
        codes[i] = 'o'
      elseif not raw or not ok or type(doc) ~= 'table' then
        codes[i] = 'g'
      elseif tonumber(doc.version) ~= cd.version then
        codes[i] = 's'
      elseif doc.state ~= 'active' or (tonumber(doc.max_nodes) or 0) ~= 0 or doc.lend == false then
        codes[i] = 'n'
      else
        local h = redis.call('HMGET', cd.health, 'state', 'created')
        if (h[1] == 'suspended' or h[1] == 'probing') and (not h[2] or h[2] == doc.created) then
          codes[i] = 'n'
        else
          local news, share = weigh(i)
          if news and share > pickShare then pick, pickNews, pickShare = i, news, share end
        end
      end
    end
  end
  if pick then return grant(pick, pickNews) end
end

if not best then return {'none', 0, 0, 0, 0, 0, rev, table.concat(codes), nowMs} end
local usage = cands[best.i].usage .. minute
if redis.call('HINCRBY', usage, 'rejected', 1) == 1 then redis.call('EXPIRE', usage, ttl) end
return {'refused', best.i, best.limit, max(1, ceil(best.wait)), best.rem, max(1, ceil(best.reset)), rev,
  table.concat(codes), nowMs}
