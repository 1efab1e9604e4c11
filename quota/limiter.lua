-- limiter.lua: every limit of one group in one step — GCRA on Redis server
-- time, all or nothing — and the group's usage of the current minute counted
-- in the same round trip.
--
-- Take (ARGV[1] = "take"): each limit i costs ARGV[2] requests or ARGV[3]
-- tokens (by its kind). If any limit would go over, nothing is taken from any
-- limit, rejected is counted and the reply names the limit with the longest
-- wait. A group cooling down after upstream throttling (health hash field
-- cooling_until, Unix ms) is refused until then, as limit 0.
-- Settle (ARGV[1] = "settle"): ARGV[3] tokens (negative = refund) are added to
-- every token limit, never refused; a refund stops at an empty limit (TAT =
-- now), a debit at one period of debt (TAT = now + tolerance + period); the
-- usage minute ARGV[4] of the reservation is corrected (never below 0, and
-- not at all once older than the usage TTL).
-- Cooling (ARGV[1] = "cooling"): only the cooldown is checked, for a group
-- without limits; nothing is written unless it refuses (rejected).
--
-- Bounds: every stored TAT lies in [now, now + tolerance + period] (a TAT
-- read outside it is clamped into it first), so no time stored or answered
-- reaches 2^53 µs. ARGV is checked before anything is written; malformed
-- input is an error reply ("ERR quota: ...").
--
-- KEYS[1] :quota:<group>   HASH limit field ("r:60000" = kind:period ms) ->
--                          TAT (theoretical arrival time, µs server time)
-- KEYS[2] :health:<group>  HASH; only cooling_until (Unix ms) is read here
-- KEYS[3] :usage:<group>:  prefix of the per-minute usage HASHes; the script
--                          appends the minute (Unix s / 60). Same hash tag, so
--                          the same slot on Cluster.
-- KEYS[4] :group:<group>  (optional) the group's document: when given and
--                          gone, nothing is read or written and the reply
--                          is {"gone"}, so a holder that has not yet heard
--                          of a delete cannot leave state for a group
--                          created later under the same name.
-- ARGV[1] "take" | "settle" | "cooling"
-- ARGV[2] requests (take: 0..max cost)
-- ARGV[3] tokens (take: 0..max cost; settle: the difference, ±max cost)
-- ARGV[4] minute of the reservation (settle: at most the current minute)
-- ARGV[5] usage TTL in seconds
-- ARGV[6] max cost (quota.MaxCost): the bound of requests, tokens, rates
--         and bursts
-- ARGV[7] max refill µs (quota.MaxRefill): the bound of period × burst / rate
-- ARGV[8] max limits (quota.MaxLimits)
-- ARGV[9..] per limit, 5 values: field, kind ("r" | "t"), period µs, rate,
--          burst (effective; cost above it is refused as malformed)
-- Reply: {allowed 1|0, limit, retry after µs, minute, remaining, reset µs},
--   or {"gone"} (KEYS[4] above)
--   limit: refused: the refusing limit with the longest wait (1-based; 0 =
--   cooling); allowed: the tightest limit (fewest left as a share of its
--   burst), 0 without limits. remaining: what that limit has left now (calls
--   or tokens; 0 while cooling); reset: µs until it is full again (the
--   cooldown's end while cooling). retry after is >= 1 on a refusal, else 0.
--   minute: the usage minute counted (settle: ARGV[4]).
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max
local function fail(msg) return redis.error_reply('ERR quota: ' .. msg) end

-- int returns s as a whole number within lo..hi, or nil.
local function int(s, lo, hi)
  local v = tonumber(s)
  if v == nil or v ~= v or v ~= floor(v) or v < lo or v > hi then return nil end
  return v
end

local mode = ARGV[1]
if mode ~= 'take' and mode ~= 'settle' and mode ~= 'cooling' then return fail('unknown mode') end
local maxCost = int(ARGV[6], 1, 2 ^ 40)
local maxRefill = int(ARGV[7], 1, 2 ^ 50)
local maxLimits = int(ARGV[8], 0, 64)
if not maxCost or not maxRefill or not maxLimits then return fail('bad bounds') end
local reqs = int(ARGV[2], 0, maxCost)
local toks = int(ARGV[3], 0, maxCost)
if mode == 'settle' then toks = int(ARGV[3], -maxCost, maxCost) end
local ttl = int(ARGV[5], 1, 2 ^ 31)
if not reqs or not toks or not ttl then return fail('bad cost or ttl') end
local n = (#ARGV - 8) / 5
if n ~= floor(n) or n > maxLimits then return fail('bad limit count') end
if mode == 'cooling' and n > 0 then return fail('cooling takes no limits') end

local fields, kinds, periods, intervals, bursts, tols = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local b = 4 + 5 * i
  fields[i], kinds[i] = ARGV[b], ARGV[b + 1]
  periods[i] = int(ARGV[b + 2], 1, maxRefill)
  local rate = int(ARGV[b + 3], 1, maxCost)
  bursts[i] = int(ARGV[b + 4], 1, maxCost)
  if fields[i] == '' or (kinds[i] ~= 'r' and kinds[i] ~= 't') or not periods[i] or not rate or not bursts[i] then
    return fail('bad limit ' .. i)
  end
  intervals[i] = periods[i] / rate
  tols[i] = intervals[i] * bursts[i]
  if tols[i] > maxRefill then return fail('limit ' .. i .. ' refills too slowly') end
  if mode == 'take' then
    local cost = reqs
    if kinds[i] == 't' then cost = toks end
    if cost > bursts[i] then return fail('cost above the burst of limit ' .. i) end
  end
end

if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 0 then return {'gone'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local minute = floor(tonumber(t[1]) / 60)
local settleMinute = 0
if mode == 'settle' then
  settleMinute = int(ARGV[4], 0, minute)
  if not settleMinute then return fail('bad minute') end
end

-- cap is the furthest a TAT may lie: the burst fully spent plus one period
-- of debt, so the longest wait for any call is one period.
local function cap(i) return now + tols[i] + periods[i] end

-- The TATs as stored, clamped into [now, cap]: a TAT in the past is an
-- empty limit; one beyond the cap (written before the cap existed, or by
-- hand) is the cap.
local tats = {}
if n > 0 then
  local raw = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 1, n do
    local v = tonumber(raw[i])
    if v == nil or v ~= v or v < now then v = now end
    tats[i] = min(v, cap(i))
  end
end

-- left is what limit i has left at TAT tat, in calls or tokens.
local function left(i, tat)
  local v = floor((now + tols[i] - tat) / intervals[i] + 1e-6)
  return max(0, min(v, bursts[i]))
end

-- answer is an allowed reply naming the tightest limit at TATs news.
local function answer(news, m)
  local best, share, rem, reset = 0, 2, 0, 0
  for i = 1, n do
    local l = left(i, news[i])
    local s, r = l / bursts[i], ceil(news[i] - now)
    if s < share or (s == share and r > reset) then best, share, rem, reset = i, s, l, r end
  end
  return {1, best, 0, m, rem, reset}
end

local function save(news)
  local args, far = {}, 0
  for i = 1, n do
    args[#args + 1] = fields[i]
    args[#args + 1] = string.format('%.3f', news[i])
    far = max(far, news[i] - now)
  end
  redis.call('HSET', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], ceil(far / 1000) + 1000)
end

if mode == 'settle' then
  local news = {}
  for i = 1, n do
    local tat = tats[i]
    if kinds[i] == 't' then
      -- toks × interval may exceed 2^53 (a double, never an overflow); the
      -- clamp brings it back before anything is stored.
      tat = tat + intervals[i] * toks
      if tat > cap(i) then tat = cap(i) end
      if tat < now then tat = now end -- a refund never goes below an empty limit
    end
    news[i] = tat
  end
  if n > 0 then save(news) end
  local usage = KEYS[3] .. settleMinute
  if toks ~= 0 and settleMinute * 60 + ttl > now / 1000000 then
    local d = toks
    if d < 0 then d = max(d, -(tonumber(redis.call('HGET', usage, 'tokens')) or 0)) end
    if d ~= 0 then
      redis.call('HINCRBY', usage, 'tokens', d)
      redis.call('EXPIRE', usage, ttl)
    end
  end
  return answer(news, settleMinute)
end

local usage = KEYS[3] .. minute
local function refuse(limit, retry, rem, reset)
  if redis.call('HINCRBY', usage, 'rejected', 1) == 1 then redis.call('EXPIRE', usage, ttl) end
  return {0, limit, max(1, ceil(retry)), minute, rem, max(1, ceil(reset))}
end

local cool = tonumber(redis.call('HGET', KEYS[2], 'cooling_until'))
if cool and cool == cool and cool * 1000 > now then
  local wait = min(cool * 1000 - now, maxRefill)
  return refuse(0, wait, 0, wait)
end
if mode == 'cooling' then return {1, 0, 0, minute, 0, 0} end

local news, worst, wait = {}, 0, 0
for i = 1, n do
  local cost = reqs
  if kinds[i] == 't' then cost = toks end
  news[i] = tats[i] + intervals[i] * cost
  local allowAt = news[i] - tols[i]
  if allowAt > now and allowAt - now > wait then worst, wait = i, allowAt - now end
end
if worst > 0 then return refuse(worst, wait, left(worst, tats[worst]), tats[worst] - now) end
if n > 0 then save(news) end
if redis.call('HINCRBY', usage, 'requests', reqs) == reqs then redis.call('EXPIRE', usage, ttl) end
if toks > 0 then
  redis.call('HINCRBY', usage, 'tokens', toks)
end
return answer(news, minute)
