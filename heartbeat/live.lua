-- live.lua: list every live node with its hash, in one round trip.
--
-- KEYS[1] :nodes ZSET node ID -> last beat (ms, server time)
-- ARGV[1] TTL in ms
-- ARGV[2] prefix of the node hashes, "{allot:NS}:node:" (same hash slot)
--
-- Reply: a flat array {now, id1, seen1, ip1, preferred1, held1, ack1, joined1, id2, ...}
-- (seven entries per node, missing hash fields as "").
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now - tonumber(ARGV[1])), '+inf', 'WITHSCORES')
local out = {now}
local n = 1
for i = 1, #ids, 2 do
  local h = redis.call('HMGET', ARGV[2] .. ids[i], 'ip', 'preferred', 'held', 'ack', 'joined')
  out[n + 1] = ids[i]
  out[n + 2] = ids[i + 1]
  out[n + 3] = h[1] or ''
  out[n + 4] = h[2] or ''
  out[n + 5] = h[3] or ''
  out[n + 6] = h[4] or ''
  out[n + 7] = h[5] or ''
  n = n + 7
end
return out
