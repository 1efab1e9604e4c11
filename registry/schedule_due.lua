-- schedule_due.lua: the scheduled items due by Redis server time.
--
-- KEYS[1] :schedule       ZSET schedule ID -> due ms
-- KEYS[2] :schedule:items HASH schedule ID -> JSON
-- ARGV[1] maximum number of items
--
-- Reply: {item JSON, ...} soonest first (IDs without an item are skipped)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(now_ms()), 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[2], id)
  if item then
    out[#out + 1] = item
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
