-- gcra.lua: the input checks and GCRA arithmetic every quota script shares,
-- prepended to limiter.lua and lease.lua (not a script itself), so a limit
-- is checked, clamped, taken and settled by one text.
--
-- A limit set L is {n, fields, kinds, periods, intervals, bursts, tols}:
-- field "r:60000" (kind:period ms), kind "r" | "t", period µs, interval =
-- period ÷ rate, burst, tolerance = interval × burst (the time an empty
-- limit takes to refill). Every stored TAT lies in [now, now + tolerance +
-- period]: a refund stops at an empty limit, a debit at one period of debt.
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max
local function fail(msg) return redis.error_reply('ERR quota: ' .. msg) end

-- int returns s as a whole number within lo..hi, or nil.
local function int(s, lo, hi)
  local v = tonumber(s)
  if v == nil or v ~= v or v ~= floor(v) or v < lo or v > hi then return nil end
  return v
end

-- read_bounds reads max cost, max refill µs and max limits (quota.MaxCost,
-- MaxRefill, MaxLimits, passed from Go) from ARGV[i], [i+1], [i+2].
local function read_bounds(i)
  local b = {cost = int(ARGV[i], 1, 2 ^ 40), refill = int(ARGV[i + 1], 1, 2 ^ 50), limits = int(ARGV[i + 2], 0, 64)}
  if not b.cost or not b.refill or not b.limits then return nil end
  return b
end

-- read_limits reads n limits of 5 values each (field, kind, period µs,
-- rate, burst) from ARGV[first..]. With reqs and toks given, a cost above a
-- limit's burst is malformed too (it could never be allowed). Returns L, or
-- nil and what is wrong.
local function read_limits(first, n, B, reqs, toks)
  if n ~= floor(n) or n < 0 or n > B.limits then return nil, 'bad limit count' end
  local L = {n = n, fields = {}, kinds = {}, periods = {}, intervals = {}, bursts = {}, tols = {}}
  for i = 1, n do
    local b = first + 5 * (i - 1)
    L.fields[i], L.kinds[i] = ARGV[b], ARGV[b + 1]
    L.periods[i] = int(ARGV[b + 2], 1, B.refill)
    local rate = int(ARGV[b + 3], 1, B.cost)
    L.bursts[i] = int(ARGV[b + 4], 1, B.cost)
    if (L.fields[i] or '') == '' or (L.kinds[i] ~= 'r' and L.kinds[i] ~= 't') or not L.periods[i] or not rate
        or not L.bursts[i] then
      return nil, 'bad limit ' .. i
    end
    L.intervals[i] = L.periods[i] / rate
    L.tols[i] = L.intervals[i] * L.bursts[i]
    if L.tols[i] > B.refill then return nil, 'limit ' .. i .. ' refills too slowly' end
    if reqs then
      local cost = reqs
      if L.kinds[i] == 't' then cost = toks end
      if cost > L.bursts[i] then return nil, 'cost above the burst of limit ' .. i end
    end
  end
  return L
end

-- limit_cap is the furthest limit i's TAT may lie: the burst fully spent
-- plus one period of debt, so the longest wait for any call is one period.
local function limit_cap(L, i, now) return now + L.tols[i] + L.periods[i] end

-- read_tats returns the TATs of L as stored in HASH key, clamped into
-- [now, cap]: a TAT in the past is an empty limit; one beyond the cap
-- (written before the cap existed, or by hand) is the cap.
local function read_tats(L, key, now)
  local tats = {}
  if L.n > 0 then
    local raw = redis.call('HMGET', key, unpack(L.fields))
    for i = 1, L.n do
      local v = tonumber(raw[i])
      if v == nil or v ~= v or v < now then v = now end
      tats[i] = min(v, limit_cap(L, i, now))
    end
  end
  return tats
end

-- left is what limit i has left at TAT tat, in calls or tokens.
local function left(L, i, tat, now)
  local v = floor((now + L.tols[i] - tat) / L.intervals[i] + 1e-6)
  return max(0, min(v, L.bursts[i]))
end

-- tightest names the limit with the least left at TATs news, as a share of
-- its burst (ties: the longer reset): index (0 without limits), share (1
-- without limits), remaining, reset µs.
local function tightest(L, news, now)
  local best, share, rem, reset = 0, 2, 0, 0
  for i = 1, L.n do
    local l = left(L, i, news[i], now)
    local s, r = l / L.bursts[i], ceil(news[i] - now)
    if s < share or (s == share and r > reset) then best, share, rem, reset = i, s, l, r end
  end
  if best == 0 then share = 1 end
  return best, share, rem, reset
end

-- save stores TATs news in HASH key, which expires once every limit is full.
local function save(L, key, news, now)
  if L.n == 0 then return end
  local args, far = {}, 0
  for i = 1, L.n do
    args[#args + 1] = L.fields[i]
    args[#args + 1] = string.format('%.3f', news[i])
    far = max(far, news[i] - now)
  end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, ceil(far / 1000) + 1000)
end

-- take returns the TATs after a call of reqs requests and toks tokens, and
-- the limit with the longest wait (0 = every limit lets it through) with
-- that wait in µs.
local function take(L, tats, reqs, toks, now)
  local news, worst, wait = {}, 0, 0
  for i = 1, L.n do
    local cost = reqs
    if L.kinds[i] == 't' then cost = toks end
    news[i] = tats[i] + L.intervals[i] * cost
    local allowAt = news[i] - L.tols[i]
    if allowAt > now and allowAt - now > wait then worst, wait = i, allowAt - now end
  end
  return news, worst, wait
end

-- settle returns the TATs after toks tokens (negative: a refund) are added
-- to every token limit: never below an empty limit, never past the cap.
local function settle(L, tats, toks, now)
  local news = {}
  for i = 1, L.n do
    local tat = tats[i]
    if L.kinds[i] == 't' then
      -- toks × interval may exceed 2^53 (a double, never an overflow); the
      -- clamp brings it back before anything is stored.
      tat = tat + L.intervals[i] * toks
      if tat > limit_cap(L, i, now) then tat = limit_cap(L, i, now) end
      if tat < now then tat = now end -- a refund never goes below an empty limit
    end
    news[i] = tat
  end
  return news
end

-- settle_usage corrects the tokens of usage minute m (prefix .. m) by toks
-- (a refund never takes them below 0), unless the minute is older than
-- the usage TTL (ttl s).
local function settle_usage(prefix, m, toks, ttl, now)
  local usage = prefix .. m
  if toks ~= 0 and m * 60 + ttl > now / 1000000 then
    local d = toks
    if d < 0 then d = max(d, -(tonumber(redis.call('HGET', usage, 'tokens')) or 0)) end
    if d ~= 0 then
      redis.call('HINCRBY', usage, 'tokens', d)
      redis.call('EXPIRE', usage, ttl)
    end
  end
end

-- cooling_until returns the end (µs) of the cooldown in health HASH key, or
-- nil when none runs.
local function cooling_until(key, now)
  local cool = tonumber(redis.call('HGET', key, 'cooling_until'))
  if cool and cool == cool and cool * 1000 > now then return cool * 1000 end
  return nil
end

-- server_now returns Redis server time in µs and the usage minute.
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]), floor(tonumber(t[1]) / 60)
end
