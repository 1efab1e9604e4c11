-- live.lua: the server time and the live node IDs with their last beat.
-- Live pipelines it with an HGETALL of :members (one round trip): a native
-- HGETALL of 10k records costs Redis far less than building them in Lua.
--
-- KEYS[1] :nodes ZSET node ID -> last beat (ms, server time)
-- ARGV[1] TTL in ms
--
-- Reply: {now (ms), "id1\nseen1\nid2\nseen2..."} — one newline-joined string
-- (IDs hold no control characters): one bulk reply instead of 20k.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now - tonumber(ARGV[1])), '+inf', 'WITHSCORES')
return {now, table.concat(ids, '\n')}
