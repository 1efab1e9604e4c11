-- live.lua: list every live node with its record, in one round trip.
--
-- KEYS[1] :nodes   ZSET node ID -> last beat (ms, server time)
-- KEYS[2] :members HASH node ID -> "joined\tip\tpreferred\theld\tack"
-- ARGV[1] TTL in ms
--
-- Reply: {now (ms), "id1\nseen1\nid2\nseen2...", "id\nrecord\nid\nrecord..."}
-- Each list comes as one newline-joined string (IDs and records hold no
-- control characters): one bulk reply instead of 40k for 10k nodes. The
-- records may include nodes past their TTL but not yet reaped; the caller
-- keeps only the IDs of the second element.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', now - tonumber(ARGV[1])), '+inf', 'WITHSCORES')
return {now, table.concat(ids, '\n'), table.concat(redis.call('HGETALL', KEYS[2]), '\n')}
