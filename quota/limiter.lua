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
-- every token limit, never refused, never below empty (a refund stops at a
-- full budget); the usage minute ARGV[4] of the reservation is corrected.
--
-- KEYS[1] :quota:<group>   HASH limit field ("r:60000" = kind:period ms) ->
--                          TAT (theoretical arrival time, µs server time)
-- KEYS[2] :health:<group>  HASH; only cooling_until (Unix ms) is read here
-- KEYS[3] :usage:<group>:  prefix of the per-minute usage HASHes; the script
--                          appends the minute (Unix s / 60). Same hash tag, so
--                          the same slot on Cluster.
-- ARGV[1] "take" | "settle"
-- ARGV[2] requests (take)
-- ARGV[3] tokens (take: >= 0; settle: the difference, may be negative)
-- ARGV[4] minute of the reservation (settle)
-- ARGV[5] usage TTL in seconds
-- ARGV[6..] per limit, 4 values: field, kind ("r" | "t"),
--          emission interval µs (period / rate), tolerance µs (interval × burst)
-- Reply (take):   {allowed 1|0, refusing limit (1-based; 0 = cooling),
--                  retry after µs, minute}
-- Reply (settle): {1, 0, 0, minute}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local minute = math.floor(tonumber(t[1]) / 60)
local mode = ARGV[1]
local reqs = tonumber(ARGV[2])
local toks = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local n = (#ARGV - 5) / 4

local fields = {}
for i = 1, n do fields[i] = ARGV[2 + 4 * i] end
local tats = {}
if n > 0 then tats = redis.call('HMGET', KEYS[1], unpack(fields)) end

local function save(news)
  local args, far = {}, 0
  for i = 1, n do
    args[#args + 1] = fields[i]
    args[#args + 1] = string.format('%.3f', news[i])
    if news[i] - now > far then far = news[i] - now end
  end
  redis.call('HSET', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], math.ceil(far / 1000) + 1000)
end

if mode == 'settle' then
  local news = {}
  for i = 1, n do
    local tat = tonumber(tats[i]) or now
    if tat < now then tat = now end
    if ARGV[3 + 4 * i] == 't' then
      tat = tat + tonumber(ARGV[4 + 4 * i]) * toks
      if tat < now then tat = now end
    end
    news[i] = tat
  end
  if n > 0 then save(news) end
  local usage = KEYS[3] .. ARGV[4]
  if toks ~= 0 then
    redis.call('HINCRBY', usage, 'tokens', toks)
    redis.call('EXPIRE', usage, ttl)
  end
  return {1, 0, 0, tonumber(ARGV[4])}
end

local usage = KEYS[3] .. minute
local function refuse(limit, retry)
  if redis.call('HINCRBY', usage, 'rejected', 1) == 1 then redis.call('EXPIRE', usage, ttl) end
  return {0, limit, math.ceil(retry), minute}
end

local cool = tonumber(redis.call('HGET', KEYS[2], 'cooling_until'))
if cool and cool * 1000 > now then return refuse(0, cool * 1000 - now) end

local news, worst, wait = {}, -1, -1
for i = 1, n do
  local tat = tonumber(tats[i]) or now
  if tat < now then tat = now end
  local cost = reqs
  if ARGV[3 + 4 * i] == 't' then cost = toks end
  local new = tat + tonumber(ARGV[4 + 4 * i]) * cost
  local allowAt = new - tonumber(ARGV[5 + 4 * i])
  if allowAt > now and allowAt - now > wait then worst, wait = i, allowAt - now end
  news[i] = new
end
if worst > 0 then return refuse(worst, wait) end
if n > 0 then save(news) end
if redis.call('HINCRBY', usage, 'requests', reqs) == reqs then redis.call('EXPIRE', usage, ttl) end
if toks > 0 then
  redis.call('HINCRBY', usage, 'tokens', toks)
end
return {1, 0, 0, minute}
