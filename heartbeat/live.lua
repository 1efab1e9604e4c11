-- live.lua: list every live node with its record, in one round trip.
--
-- KEYS[1] :nodes   ZSET node ID -> last beat (ms, server time)
-- KEYS[2] :members HASH node ID -> "joined\tip\tpreferred\theld\tack"
-- ARGV[1] TTL in ms
--
-- Reply: {now (ms), {id1, seen1, id2, seen2, ...}, {id, record, id, record, ...}}
-- The records may include nodes that are past their TTL but not yet reaped;
-- the caller keeps only the IDs of the second element.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now - tonumber(ARGV[1])), '+inf', 'WITHSCORES')
return {now, ids, redis.call('HGETALL', KEYS[2])}
