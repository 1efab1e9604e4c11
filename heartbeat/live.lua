-- live.lua: the server time and the live node IDs with their last beat.
-- Live pipelines it with an HGETALL of :members (one round trip): a native
-- HGETALL of 10k records costs Redis far less than building them in Lua.
--
-- KEYS[1] :nodes ZSET node ID -> last beat (ms, server time)
-- KEYS[2] :settings HASH ttl_ms: the stored TTL wins over ARGV[1], as in
--         beat.lua and reap.lua
-- ARGV[1] TTL in ms, used when :settings stores none
--
-- Reply: {now (ms), "id1\nseen1\nid2\nseen2..."} — one newline-joined string
-- (IDs hold no control characters): one bulk reply instead of 20k.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(redis.call('HGET', KEYS[2], 'ttl_ms') or '')
if not ttl or ttl <= 0 then
  ttl = tonumber(ARGV[1])
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now - ttl), '+inf', 'WITHSCORES')
return {now, table.concat(ids, '\n')}
