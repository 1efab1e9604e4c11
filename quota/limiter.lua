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
-- input is an error reply ("ERR quota: ..."). The checks and the GCRA are
-- gcra.lua's, prepended (shared with lease.lua).
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
local mode = ARGV[1]
if mode ~= 'take' and mode ~= 'settle' and mode ~= 'cooling' then return fail('unknown mode') end
local B = read_bounds(6)
if not B then return fail('bad bounds') end
local reqs = int(ARGV[2], 0, B.cost)
local toks = int(ARGV[3], 0, B.cost)
if mode == 'settle' then toks = int(ARGV[3], -B.cost, B.cost) end
local ttl = int(ARGV[5], 1, 2 ^ 31)
if not reqs or not toks or not ttl then return fail('bad cost or ttl') end
local n = (#ARGV - 8) / 5
if n ~= floor(n) or n > B.limits then return fail('bad limit count') end
if mode == 'cooling' and n > 0 then return fail('cooling takes no limits') end
local L, why
if mode == 'take' then
  L, why = read_limits(9, n, B, reqs, toks)
else
  L, why = read_limits(9, n, B)
end
if not L then return fail(why) end

if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 0 then return {'gone'} end

local now, minute = server_now()
local settleMinute = 0
if mode == 'settle' then
  settleMinute = int(ARGV[4], 0, minute)
  if not settleMinute then return fail('bad minute') end
end

local tats = read_tats(L, KEYS[1], now)

-- answer is an allowed reply naming the tightest limit at TATs news.
local function answer(news, m)
  local best, _, rem, reset = tightest(L, news, now)
  return {1, best, 0, m, rem, reset}
end

if mode == 'settle' then
  local news = settle(L, tats, toks, now)
  save(L, KEYS[1], news, now)
  settle_usage(KEYS[3], settleMinute, toks, ttl, now)
  return answer(news, settleMinute)
end

local usage = KEYS[3] .. minute
local function refuse(limit, retry, rem, reset)
  if redis.call('HINCRBY', usage, 'rejected', 1) == 1 then redis.call('EXPIRE', usage, ttl) end
  return {0, limit, max(1, ceil(retry)), minute, rem, max(1, ceil(reset))}
end

local cool = cooling_until(KEYS[2], now)
if cool then
  local wait = min(cool - now, B.refill)
  return refuse(0, wait, 0, wait)
end
if mode == 'cooling' then return {1, 0, 0, minute, 0, 0} end

local news, worst, wait = take(L, tats, reqs, toks, now)
if worst > 0 then return refuse(worst, wait, left(L, worst, tats[worst], now), tats[worst] - now) end
save(L, KEYS[1], news, now)
if redis.call('HINCRBY', usage, 'requests', reqs) == reqs then redis.call('EXPIRE', usage, ttl) end
if toks > 0 then
  redis.call('HINCRBY', usage, 'tokens', toks)
end
return answer(news, minute)
